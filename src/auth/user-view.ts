import Type, { type Static } from 'typebox';
import type { CreatedUser } from './setup-token.js';
import type { UserView } from './user-rows.js';

const DateTime = Type.String({ format: 'date-time' });
const Named = Type.Object({ id: Type.String({ format: 'uuid' }), name: Type.String() });

/**
 * A user as every front end shows it: the tenant routes, the CLI's `--json`, OpenAPI and the
 * library's typed calls. Global admins have the same shape (no tenant, `globalAdmin` true).
 */
export const UserViewSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  email: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  status: Type.Union([Type.Literal('active'), Type.Literal('inactive')]),
  tenantId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
    description: 'Null for a global admin',
  }),
  globalAdmin: Type.Boolean(),
  roles: Type.Array(Named),
  groups: Type.Array(Named),
  passwordSet: Type.Boolean({
    description: 'Whether the user can log in yet (false until the set-up token is used)',
  }),
  createdAt: DateTime,
  lastLoginAt: Type.Union([DateTime, Type.Null()]),
});
export type UserJson = Static<typeof UserViewSchema>;

export function userView(user: UserView): UserJson {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    status: user.status,
    tenantId: user.tenantId,
    globalAdmin: user.globalAdmin,
    roles: user.roles.map((role) => ({ id: role.id, name: role.name })),
    groups: user.groups.map((group) => ({ id: group.id, name: group.name })),
    passwordSet: user.passwordSet,
    createdAt: user.createdAt.toISOString(),
    lastLoginAt: user.lastLoginAt === null ? null : user.lastLoginAt.toISOString(),
  };
}

const SetupToken = Type.String({ description: 'Sets a password once; shown only in this response' });

/** A user just made; without a password, with the one-time set-up token that sets it. */
export const CreatedUserSchema = Type.Object({
  user: UserViewSchema,
  setupToken: Type.Optional(SetupToken),
  warning: Type.Optional(Type.String()),
});
export type CreatedUserJson = Static<typeof CreatedUserSchema>;

export function createdUserView(created: CreatedUser): CreatedUserJson {
  const user = userView(created.user);
  return created.setupToken === undefined
    ? { user }
    : { user, setupToken: created.setupToken, warning: created.warning };
}

/** A password reset: the user's sessions have ended; the token sets a new password once. */
export const SetupTokenSchema = Type.Object({ setupToken: SetupToken, warning: Type.String() });
export type SetupTokenJson = Static<typeof SetupTokenSchema>;
