import type { TenantryConfig } from '../config/config-schema.js';
import { LockKey, withAdvisoryLock } from '../db/advisory-locks.js';
import type { Database, Session } from '../db/database.js';
import { type MigrationReport, migrateControlPlane } from '../db/migrator.js';
import { ensureRuntimeRole, revokeControlPlaneAccess } from '../db/roles.js';
import { sharedTablesDdl, tenantTablesDdl } from '../entities/entity-ddl.js';
import {
  loadVersions,
  registerVersion,
  setStorageVersion,
  storageVersion,
} from '../entities/entity-ledger.js';
import { diffTables, readTables, SchemaDriftError } from '../entities/entity-schema.js';
import { fillHostSkeletons } from '../tenants/tenant-rules.js';
import { ROW_SCHEMA, SHARED_SCHEMA } from './tenant-placement.js';

/**
 * Everything a database needs before it serves, what `init-db` and every start do: the
 * control-plane migrations, then the runtime role, its grants and the entity tables (under their
 * lock, all on the locked connection: a pool of one connection must not wait for itself).
 */
export async function prepareDatabase(
  db: Database,
  config: TenantryConfig,
  verifyEntities: boolean,
): Promise<MigrationReport> {
  const migration = await migrateControlPlane(db.owner);
  await fillHostSkeletons(db.owner);
  await withAdvisoryLock(db.owner, LockKey.ENTITY_STORAGE, (session) =>
    prepareEntityStorage(session, config, verifyEntities),
  );
  return migration;
}

/**
 * Start-up set-up of entity storage, run under the ENTITY_STORAGE lock: the runtime role and its
 * grants; on a fresh database the row-level and shared tables at the declared entities, which
 * become version 1 of the ledger. A database from before the ledger is adopted as version 1 when
 * its tables match the declaration. With `verify` (serve), the row-level and shared tables must
 * match the version they record; tenants with tables of their own are trusted to their ledger.
 */
export async function prepareEntityStorage(
  db: Session,
  config: TenantryConfig,
  verify: boolean,
): Promise<void> {
  const role = config.database.runtimeRole;
  await ensureRuntimeRole(db, role);
  await revokeControlPlaneAccess(db, role);
  const tenantEntities = config.entities.filter((entity) => entity.scope === 'tenant');
  const sharedEntities = config.entities.filter((entity) => entity.scope === 'shared');
  const versions = await loadVersions(db);
  if (versions.length === 0) {
    const before = await readTables(db, [ROW_SCHEMA, SHARED_SCHEMA]);
    const statements: string[] = [];
    if (before.get(ROW_SCHEMA)!.size === 0)
      statements.push(...tenantTablesDdl(tenantEntities, { schema: ROW_SCHEMA, runtimeRole: role }));
    if (before.get(SHARED_SCHEMA)!.size === 0)
      statements.push(...sharedTablesDdl(sharedEntities, { schema: SHARED_SCHEMA, runtimeRole: role }));
    await db.transaction(async (tx) => {
      for (const statement of statements) await tx.query(statement);
      const actual = await readTables(tx, [ROW_SCHEMA, SHARED_SCHEMA]);
      const differences = [
        ...diffTables(tenantEntities, actual.get(ROW_SCHEMA)!, `schema ${ROW_SCHEMA} (row tenants)`),
        ...diffTables(sharedEntities, actual.get(SHARED_SCHEMA)!, `schema ${SHARED_SCHEMA}`),
      ];
      if (differences.length > 0) throw new SchemaDriftError(differences);
    });
    const version = await registerVersion(db, config.entities);
    await db.transaction(async (tx) => {
      await setStorageVersion(tx, 'row', version.version);
      await setStorageVersion(tx, 'shared', version.version);
      // Tenants from before the ledger were built at these entities (serve verified it then).
      await tx.query(
        "UPDATE tenantry.tenants SET schema_version = $1 WHERE schema_version IS NULL AND status <> 'provisioning'",
        [version.version],
      );
    });
    return;
  }
  if (!verify) return;
  const byVersion = new Map(versions.map((version) => [version.version, version.entities]));
  const actual = await readTables(db, [ROW_SCHEMA, SHARED_SCHEMA]);
  const differences: string[] = [];
  for (const [storage, schema, scope] of [
    ['row', ROW_SCHEMA, 'tenant'],
    ['shared', SHARED_SCHEMA, 'shared'],
  ] as const) {
    const version = await storageVersion(db, storage);
    const entities = (version === undefined ? undefined : byVersion.get(version)) ?? [];
    differences.push(
      ...diffTables(
        entities.filter((entity) => entity.scope === scope),
        actual.get(schema)!,
        `schema ${schema} (entity version ${version ?? 'none'})`,
      ),
    );
  }
  if (differences.length > 0) throw new SchemaDriftError(differences);
}
