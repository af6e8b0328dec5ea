import Type from 'typebox';
import { UserViewSchema, userView } from '../../auth/user-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, UserRef, userIdIn } from './user-input.js';

export const showUser = defineOperation({
  name: 'users.show',
  summary: 'One user (users:manage)',
  access: { operator: true, tenant: 'users:manage' },
  input: Type.Object({ ...InTenant, user: UserRef }, { additionalProperties: false }),
  output: UserViewSchema,
  http: [{ method: 'GET', path: '/api/v1/users/:id', scope: 'tenant', params: { id: 'user' } }],
  async run({ tenant, user }, call) {
    const { id } = await call.tenant(tenant);
    return userView(await call.engine.identity.users.get(id, await userIdIn(call, id, user)));
  },
});
