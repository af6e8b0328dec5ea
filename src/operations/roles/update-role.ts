import Type from 'typebox';
import { RoleViewSchema, roleView } from '../../auth/role-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, RoleFields, RoleRef } from './role-input.js';

/** A built-in role can only be made the default; making a role the default needs all it grants. */
export const updateRole = defineOperation({
  name: 'roles.update',
  summary: 'Change a role: added permissions must be yours',
  access: { operator: true, tenant: 'roles:manage' },
  input: Type.Object({ ...InTenant, role: RoleRef, ...RoleFields }, { additionalProperties: false }),
  output: RoleViewSchema,
  audit: ['role.update'],
  http: [{ method: 'PATCH', path: '/api/v1/roles/:id', scope: 'tenant', params: { id: 'role' } }],
  async run({ tenant, role, ...change }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return roleView(await call.engine.identity.roles.update(principal, role, change));
  },
});
