import Type from 'typebox';
import { RoleViewSchema, roleView } from '../../auth/role-view.js';
import { defineOperation } from '../operation.js';
import { InTenant } from './role-input.js';

export const listRoles = defineOperation({
  name: 'roles.list',
  summary: 'List the roles of this tenant (roles:manage)',
  access: { operator: true, tenant: 'roles:manage' },
  input: Type.Object({ ...InTenant }, { additionalProperties: false }),
  output: Type.Object({ roles: Type.Array(RoleViewSchema) }),
  http: [
    {
      method: 'GET',
      path: '/api/v1/roles',
      scope: 'tenant',
      respond: {
        schema: Type.Object({ items: Type.Array(RoleViewSchema) }),
        from: (output: { roles: unknown[] }) => ({ items: output.roles }),
      },
    },
  ],
  async run({ tenant }, call) {
    const found = await call.tenant(tenant);
    const roles = await call.engine.identity.roles.list(found.id);
    return { roles: roles.map(roleView) };
  },
});
