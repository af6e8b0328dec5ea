import Type from 'typebox';
import { defineOperation } from '../operation.js';
import { InTenant, UserRef, userIdIn } from './user-input.js';

/** The API keys the user made are revoked with it; the tenant's last admin is never deleted. */
export const deleteUser = defineOperation({
  name: 'users.delete',
  summary: 'Delete a user',
  access: { operator: true, tenant: 'users:manage' },
  input: Type.Object({ ...InTenant, user: UserRef }, { additionalProperties: false }),
  output: Type.Null(),
  audit: ['user.delete'],
  http: [
    { method: 'DELETE', path: '/api/v1/users/:id', scope: 'tenant', params: { id: 'user' }, status: 204 },
  ],
  async run({ tenant, user }, call) {
    const principal = call.principal(await call.tenant(tenant));
    await call.engine.identity.users.delete(principal, await userIdIn(call, principal.tenantId, user));
    return null;
  },
});
