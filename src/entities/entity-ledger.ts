import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { Queryable, Session } from '../db/database.js';
import type { Entity } from './entity.js';
import { type EntityVersion, entitiesDigest, loadVersions, serialiseEntities } from './entity-versions.js';

/** Tables shared by many tenants that carry one version for all of them. */
export type SharedStorage = 'row' | 'shared';

/**
 * The version of `entities`: the newest registered version when it has the same digest,
 * otherwise a new version registered now. Versions only grow, so going back to an earlier
 * declaration registers it again as the newest.
 */
export async function registerVersion(db: Session, entities: readonly Entity[]): Promise<EntityVersion> {
  const digest = entitiesDigest(entities);
  return db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, LockKey.ENTITY_VERSIONS]);
    const { rows } = await tx.query<{ version: number; digest: string }>(
      'SELECT version, digest FROM tenantry.entity_versions ORDER BY version DESC LIMIT 1',
    );
    const latest = rows[0];
    if (latest && latest.digest === digest) {
      return { version: Number(latest.version), digest, entities };
    }
    const version = Number(latest?.version ?? 0) + 1;
    await tx.query(
      'INSERT INTO tenantry.entity_versions (version, digest, entities) VALUES ($1, $2, $3::jsonb)',
      [version, digest, serialiseEntities(entities)],
    );
    return { version, digest, entities };
  });
}

export async function storageVersion(db: Queryable, storage: SharedStorage): Promise<number | undefined> {
  const { rows } = await db.query<{ version: number }>(
    'SELECT version FROM tenantry.storage_versions WHERE storage = $1',
    [storage],
  );
  return rows[0] === undefined ? undefined : Number(rows[0].version);
}

export async function setStorageVersion(
  db: Queryable,
  storage: SharedStorage,
  version: number,
): Promise<void> {
  await db.query(
    `INSERT INTO tenantry.storage_versions (storage, version) VALUES ($1, $2)
     ON CONFLICT (storage) DO UPDATE SET version = excluded.version, migrated_at = now()`,
    [storage, version],
  );
}

export { loadVersions };

/**
 * The version new tenants of this code are built at: the newest version with the code's digest,
 * registered when there is none. Unlike `registerVersion` it never re-registers an older
 * declaration as the newest, so an old process still running during a rollout cannot make its
 * entities "newer" than the new code's.
 */
export async function versionFor(db: Session, entities: readonly Entity[]): Promise<EntityVersion> {
  const digest = entitiesDigest(entities);
  const { rows } = await db.query<{ version: number }>(
    'SELECT max(version) AS version FROM tenantry.entity_versions WHERE digest = $1',
    [digest],
  );
  const found = rows[0]?.version;
  if (found !== null && found !== undefined) return { version: Number(found), digest, entities };
  return registerVersion(db, entities);
}
