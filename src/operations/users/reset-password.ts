import Type from 'typebox';
import { SetupTokenSchema } from '../../auth/user-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, UserRef, userIdIn } from './user-input.js';

/** Whoever holds the token becomes the user: refused for someone who holds more than the caller. */
export const resetPassword = defineOperation({
  name: 'users.resetPassword',
  summary: 'End the user’s sessions and issue a set-up token',
  access: { operator: true, tenant: 'users:manage' },
  input: Type.Object({ ...InTenant, user: UserRef }, { additionalProperties: false }),
  output: SetupTokenSchema,
  audit: ['user.reset_password'],
  http: [
    { method: 'POST', path: '/api/v1/users/:id/reset-password', scope: 'tenant', params: { id: 'user' } },
  ],
  async run({ tenant, user }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return call.engine.identity.users.resetPassword(
      principal,
      await userIdIn(call, principal.tenantId, user),
    );
  },
});
