import Type from 'typebox';
import { RoleViewSchema, roleView } from '../../auth/role-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, NewRoleFields } from './role-input.js';

export const createRole = defineOperation({
  name: 'roles.create',
  summary: 'Create a role: only with permissions you hold',
  access: { operator: true, tenant: 'roles:manage' },
  input: Type.Object({ ...InTenant, ...NewRoleFields }, { additionalProperties: false }),
  output: RoleViewSchema,
  audit: ['role.create'],
  http: [{ method: 'POST', path: '/api/v1/roles', scope: 'tenant', status: 201 }],
  async run({ tenant, ...role }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return roleView(await call.engine.identity.roles.create(principal, role));
  },
});
