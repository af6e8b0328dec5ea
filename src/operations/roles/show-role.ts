import Type from 'typebox';
import { RoleViewSchema, roleView } from '../../auth/role-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, RoleRef } from './role-input.js';

export const showRole = defineOperation({
  name: 'roles.show',
  summary: 'One role (roles:manage)',
  access: { operator: true, tenant: 'roles:manage' },
  input: Type.Object({ ...InTenant, role: RoleRef }, { additionalProperties: false }),
  output: RoleViewSchema,
  http: [{ method: 'GET', path: '/api/v1/roles/:id', scope: 'tenant', params: { id: 'role' } }],
  async run({ tenant, role }, call) {
    const found = await call.tenant(tenant);
    return roleView(await call.engine.identity.roles.get(found.id, role));
  },
});
