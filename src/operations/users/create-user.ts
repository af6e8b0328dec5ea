import Type from 'typebox';
import { CreatedUserSchema, createdUserView } from '../../auth/user-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, UserCreateFields } from './user-input.js';

/** Refused beyond the tenant's `limits.maxUsers`; roles and groups given must be held by the caller. */
export const createUser = defineOperation({
  name: 'users.create',
  summary: 'Create a user (without a password: a set-up token, shown once)',
  access: { operator: true, tenant: 'users:manage' },
  input: Type.Object({ ...InTenant, ...UserCreateFields }, { additionalProperties: false }),
  output: CreatedUserSchema,
  audit: ['user.create'],
  http: [{ method: 'POST', path: '/api/v1/users', scope: 'tenant', status: 201 }],
  async run({ tenant, ...user }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return createdUserView(await call.engine.identity.users.create(principal, user));
  },
});
