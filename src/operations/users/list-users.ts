import Type from 'typebox';
import { UserViewSchema, userView } from '../../auth/user-view.js';
import { defineOperation } from '../operation.js';
import { InTenant } from './user-input.js';

export const listUsers = defineOperation({
  name: 'users.list',
  summary: 'List the users of this tenant (users:manage)',
  access: { operator: true, tenant: 'users:manage' },
  input: Type.Object({ ...InTenant }, { additionalProperties: false }),
  output: Type.Object({ users: Type.Array(UserViewSchema) }),
  http: [
    {
      method: 'GET',
      path: '/api/v1/users',
      scope: 'tenant',
      respond: {
        schema: Type.Object({ items: Type.Array(UserViewSchema) }),
        from: (output: { users: unknown[] }) => ({ items: output.users }),
      },
    },
  ],
  async run({ tenant }, call) {
    const found = await call.tenant(tenant);
    const users = await call.engine.identity.users.list(found.id);
    return { users: users.map(userView) };
  },
});
