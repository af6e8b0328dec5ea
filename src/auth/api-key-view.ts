import Type, { type Static } from 'typebox';
import type { ApiKeyInfo, IssuedApiKey } from './api-key-store.js';
import type { CreatedApiKey } from './tenant-keys.js';

const DateTime = Type.String({ format: 'date-time' });
const NullableDateTime = Type.Union([DateTime, Type.Null()]);
const Permissions = Type.Union([Type.Array(Type.String()), Type.Null()], {
  description: 'What the key may do; null: every tenant permission (bounded by its maker)',
});

/** An API key as listings show it: never the secret or its hash. */
export const ApiKeyViewSchema = Type.Object({
  id: Type.String(),
  keyId: Type.String(),
  name: Type.String(),
  createdAt: DateTime,
  lastUsedAt: NullableDateTime,
  revokedAt: NullableDateTime,
  expiresAt: NullableDateTime,
  permissions: Permissions,
  createdBy: Type.Union([Type.String(), Type.Null()], {
    description: 'The user who made it; null: an operator',
  }),
});
export type ApiKeyView = Static<typeof ApiKeyViewSchema>;

const iso = (date: Date | null) => (date === null ? null : date.toISOString());

export function apiKeyView(key: ApiKeyInfo): ApiKeyView {
  return {
    id: key.id,
    keyId: key.keyId,
    name: key.name,
    createdAt: key.createdAt.toISOString(),
    lastUsedAt: iso(key.lastUsedAt),
    revokedAt: iso(key.revokedAt),
    expiresAt: iso(key.expiresAt),
    permissions: key.permissions === null ? null : [...key.permissions],
    createdBy: key.createdBy,
  };
}

/** A key just made: the whole key, in this answer only. */
export const IssuedKeySchema = Type.Object({
  keyId: Type.String(),
  key: Type.String({ description: 'The whole API key. Shown only in this response.' }),
  warning: Type.String(),
});
export type IssuedKeyView = Static<typeof IssuedKeySchema>;

export function issuedKeyView(issued: IssuedApiKey): IssuedKeyView {
  return { keyId: issued.keyId, key: issued.key, warning: issued.warning };
}

/** A further key just made, with what it may do. */
export const CreatedKeySchema = Type.Object({
  ...IssuedKeySchema.properties,
  name: Type.String(),
  expiresAt: NullableDateTime,
  permissions: Permissions,
});
export type CreatedKeyView = Static<typeof CreatedKeySchema>;

export function createdKeyView(created: CreatedApiKey): CreatedKeyView {
  return {
    ...issuedKeyView(created),
    name: created.name,
    expiresAt: iso(created.expiresAt),
    permissions: created.permissions === null ? null : [...created.permissions],
  };
}
