import Type from 'typebox';
import { UserViewSchema, userView } from '../../auth/user-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, UserPatchFields, UserRef, userIdIn } from './user-input.js';

/**
 * Also how a user is deactivated (`status: 'inactive'`: its sessions end at once). Changing the
 * email, status, roles or groups of someone who holds more than the caller is refused, and the
 * tenant's last admin is never taken away.
 */
export const updateUser = defineOperation({
  name: 'users.update',
  summary: 'Change a user: name, email, status, roles, groups',
  access: { operator: true, tenant: 'users:manage' },
  input: Type.Object({ ...InTenant, user: UserRef, ...UserPatchFields }, { additionalProperties: false }),
  output: UserViewSchema,
  audit: ['user.update', 'user.deactivate'],
  http: [{ method: 'PATCH', path: '/api/v1/users/:id', scope: 'tenant', params: { id: 'user' } }],
  async run({ tenant, user, ...change }, call) {
    const principal = call.principal(await call.tenant(tenant));
    const id = await userIdIn(call, principal.tenantId, user);
    return userView(await call.engine.identity.users.update(principal, id, change));
  },
});
