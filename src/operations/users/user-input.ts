import Type from 'typebox';
import { isUuid } from '../../auth/access-names.js';
import type { OperationCall } from '../operation.js';
import { TenantRef } from '../refs.js';

/** Operators name the tenant; a tenant actor's is its own. */
export const InTenant = { tenant: Type.Optional(TenantRef) };

/** A user of the tenant named by its id (the tenant routes' `:id`) or its email (the CLI's). */
export const UserRef = Type.String({ minLength: 1, maxLength: 254, description: 'The user’s id or email' });

const Email = Type.String({ minLength: 3, maxLength: 254 });
const AccessRefs = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100 });

/** What a new user is made of; absent roles: the tenant's default role. */
export const UserCreateFields = {
  email: Email,
  name: Type.Optional(Type.String({ maxLength: 200 })),
  password: Type.Optional(
    Type.String({ minLength: 1, maxLength: 1024, description: 'Absent: a one-time set-up token is issued' }),
  ),
  roles: Type.Optional(AccessRefs),
  groups: Type.Optional(AccessRefs),
};

/** What a change may touch; given roles or groups replace the user's. */
export const UserPatchFields = {
  email: Type.Optional(Email),
  name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
  roles: Type.Optional(AccessRefs),
  groups: Type.Optional(AccessRefs),
  status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('inactive')])),
};

/**
 * The id of the user `ref` names in the tenant. An id goes to the directory as it is, so the
 * directory's own look-up (inside its transaction) answers for a missing or foreign one.
 */
export async function userIdIn(call: OperationCall, tenantId: string, ref: string): Promise<string> {
  return isUuid(ref) ? ref : (await call.engine.identity.users.lookup(tenantId, ref)).id;
}
