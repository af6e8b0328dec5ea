import { v7 as uuidv7 } from 'uuid';
import type { Queryable } from '../db/database.js';
import { type GeneratedApiKey, generateApiKey, hashSecret, type StoredKeyHash } from './api-key.js';

/** What may be shown about a key after its creation: never the secret or its hash. */
export interface ApiKeyInfo {
  readonly id: string;
  readonly keyId: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly lastUsedAt: Date | null;
  readonly revokedAt: Date | null;
  readonly expiresAt: Date | null;
  /** Null: every tenant permission (bounded by its creator's, when a user made it). */
  readonly permissions: readonly string[] | null;
  /** The user who made it, or null (an operator). */
  readonly createdBy: string | null;
}

/** A freshly made key: the plaintext leaves the engine once, in this value, and is never stored. */
export interface IssuedApiKey {
  readonly keyId: string;
  readonly key: string;
  readonly warning: string;
}

export const SHOWN_ONCE_WARNING =
  'Store this API key now: it is shown only once and cannot be retrieved later.';

/** A key made and hashed outside any transaction, so the slow hash never holds a lock. */
export interface PreparedApiKey {
  readonly generated: GeneratedApiKey;
  readonly stored: StoredKeyHash;
}

export async function prepareApiKey(iterations: number): Promise<PreparedApiKey> {
  const generated = generateApiKey();
  return { generated, stored: await hashSecret(generated.secret, iterations) };
}

export async function insertApiKey(
  tx: Queryable,
  tenantId: string,
  prepared: PreparedApiKey,
  name = 'default',
  expiresAt: Date | null = null,
  scope: { permissions: readonly string[] | null; createdBy: string | null } = {
    permissions: null,
    createdBy: null,
  },
): Promise<IssuedApiKey> {
  await tx.query(
    `INSERT INTO tenantry.api_keys (id, key_id, tenant_id, name, salt, hash, iterations, expires_at, permissions, created_by)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
    [
      uuidv7(),
      prepared.generated.keyId,
      tenantId,
      name,
      prepared.stored.salt,
      prepared.stored.hash,
      prepared.stored.iterations,
      expiresAt,
      scope.permissions === null ? null : [...scope.permissions],
      scope.createdBy,
    ],
  );
  return { keyId: prepared.generated.keyId, key: prepared.generated.plaintext, warning: SHOWN_ONCE_WARNING };
}

/** Keys of a tenant that can still authenticate: not revoked, not expired. */
export async function countLiveKeys(db: Queryable, tenantId: string): Promise<number> {
  const { rows } = await db.query<{ count: string | number }>(
    `SELECT count(*) AS count FROM tenantry.api_keys
      WHERE tenant_id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
    [tenantId],
  );
  return Number(rows[0]?.count ?? 0);
}

/**
 * Revokes one key of a tenant. Returns whether it was live until now (false: revoked before),
 * or undefined when the tenant has no such key.
 */
export async function revokeTenantKey(
  tx: Queryable,
  tenantId: string,
  keyId: string,
): Promise<boolean | undefined> {
  const { rows } = await tx.query<{ revoked_now: boolean }>(
    `UPDATE tenantry.api_keys SET revoked_at = coalesce(revoked_at, now())
      WHERE tenant_id = $1 AND key_id = $2
      RETURNING revoked_at = now() AS revoked_now`,
    [tenantId, keyId],
  );
  return rows[0]?.revoked_now;
}

/** Revokes every live key of a tenant; returns the key ids revoked. */
export async function revokeTenantKeys(tx: Queryable, tenantId: string): Promise<string[]> {
  const { rows } = await tx.query<{ key_id: string }>(
    `UPDATE tenantry.api_keys SET revoked_at = now()
      WHERE tenant_id = $1 AND revoked_at IS NULL
      RETURNING key_id`,
    [tenantId],
  );
  return rows.map((row) => row.key_id);
}

/** Revokes every live key a user made in a tenant; returns the key ids revoked. */
export async function revokeKeysMadeBy(tx: Queryable, tenantId: string, userId: string): Promise<string[]> {
  const { rows } = await tx.query<{ key_id: string }>(
    `UPDATE tenantry.api_keys SET revoked_at = now()
      WHERE tenant_id = $1 AND created_by = $2 AND revoked_at IS NULL
      RETURNING key_id`,
    [tenantId, userId],
  );
  return rows.map((row) => row.key_id);
}

interface ApiKeyRow {
  id: string;
  key_id: string;
  name: string;
  created_at: Date | string;
  last_used_at: Date | string | null;
  revoked_at: Date | string | null;
  expires_at: Date | string | null;
  permissions: string[] | null;
  created_by: string | null;
  [column: string]: unknown;
}

const dateOrNull = (value: Date | string | null): Date | null => (value === null ? null : new Date(value));

export async function listTenantKeys(
  db: Queryable,
  tenantId: string,
  includeRevoked: boolean,
  keyId: string | null = null,
): Promise<ApiKeyInfo[]> {
  const { rows } = await db.query<ApiKeyRow>(
    `SELECT id, key_id, name, created_at, last_used_at, revoked_at, expires_at, permissions, created_by
       FROM tenantry.api_keys
      WHERE tenant_id = $1 AND ($2 OR revoked_at IS NULL) AND ($3::text IS NULL OR key_id = $3::text)
      ORDER BY created_at, id`,
    [tenantId, includeRevoked, keyId],
  );
  return rows.map((row) => ({
    id: row.id,
    keyId: row.key_id,
    name: row.name,
    createdAt: new Date(row.created_at),
    lastUsedAt: dateOrNull(row.last_used_at),
    revokedAt: dateOrNull(row.revoked_at),
    expiresAt: dateOrNull(row.expires_at),
    permissions: row.permissions ?? null,
    createdBy: row.created_by ?? null,
  }));
}

export interface KeyVerificationRow {
  tenant_id: string;
  salt: Buffer | Uint8Array;
  hash: Buffer | Uint8Array;
  iterations: number;
  usable: boolean;
  expires_at: Date | string | null;
  permissions: string[] | null;
  created_by: string | null;
  [column: string]: unknown;
}

/**
 * The stored hash of a key, whether it may authenticate now (not revoked, not expired, tenant
 * active), and when it expires (a cached verification must not outlive it).
 */
export async function findKeyForVerification(
  db: Queryable,
  keyId: string,
): Promise<KeyVerificationRow | undefined> {
  const { rows } = await db.query<KeyVerificationRow>(
    `SELECT k.tenant_id, k.salt, k.hash, k.iterations, k.expires_at, k.permissions, k.created_by,
            (k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) AND t.status = 'active') AS usable
       FROM tenantry.api_keys k
       JOIN tenantry.tenants t ON t.id = k.tenant_id
      WHERE k.key_id = $1`,
    [keyId],
  );
  return rows[0];
}

/**
 * Records a use of each key, in one statement (key ids are hex: no commas). Rows are locked in
 * key order and a row locked by someone else is skipped: two processes writing overlapping
 * batches can neither deadlock nor wait on a revocation in progress, and a missed "last used"
 * costs nothing.
 */
export async function touchKeys(db: Queryable, keyIds: readonly string[]): Promise<void> {
  await db.query(
    `UPDATE tenantry.api_keys SET last_used_at = now()
      WHERE key_id IN (SELECT key_id FROM tenantry.api_keys WHERE key_id = ANY(string_to_array($1, ','))
                        ORDER BY key_id FOR UPDATE SKIP LOCKED)`,
    [keyIds.join(',')],
  );
}
