import type { LiveConfig } from '../config/live-config.js';
import type { Database, Queryable, Session } from '../db/database.js';
import { setStorageVersion } from '../entities/entity-ledger.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { DatabaseServers } from './database-servers.js';
import { MigrationRefusedError } from './migration-errors.js';
import type { EntityChangePlans, Versions } from './migration-plan.js';
import type { TenantUnit, Unit } from './migration-units.js';
import type { TenantDatabases } from './tenant-databases.js';
import type { TenantLocks } from './tenant-locks.js';
import {
  databaseLocation,
  placementOf,
  ROW_SCHEMA,
  SHARED_SCHEMA,
  type TenantPlacement,
  tenantSchemaName,
} from './tenant-placement.js';
import { readDatabaseLedger, writeDatabaseLedger } from './tenant-provisioner.js';

export interface MigrationDependencies {
  readonly db: Database;
  readonly config: LiveConfig;
  readonly bus: ChangeBus;
  readonly locks: TenantLocks;
  readonly databases: TenantDatabases | undefined;
  readonly servers: DatabaseServers;
}

export interface UnitMigrationOptions {
  readonly allowDestructive?: boolean;
  /** How long one tenant's DDL waits for a table lock before that tenant fails (default 10 s). */
  readonly lockTimeoutMs?: number;
}

/** Brings one unit to the target version; a failure rolls that unit back and leaves the others alone. */
export class UnitMigration {
  readonly #deps: MigrationDependencies;
  readonly #plans: EntityChangePlans;
  readonly #versions: Versions;
  readonly #target: number;
  readonly #options: UnitMigrationOptions;
  readonly #lockTimeout: string;

  constructor(
    deps: MigrationDependencies,
    plans: EntityChangePlans,
    versions: Versions,
    target: number,
    options: UnitMigrationOptions,
  ) {
    this.#deps = deps;
    this.#plans = plans;
    this.#versions = versions;
    this.#target = target;
    this.#options = options;
    this.#lockTimeout = `${Math.trunc(options.lockTimeoutMs ?? 10_000)}ms`;
  }

  async migrate(unit: Unit): Promise<void> {
    if (unit.kind === 'shared') return this.#migrateShared();
    if (unit.kind === 'row') return this.#migrateRow();
    return this.#migrateTenant(unit);
  }

  async #apply(
    tx: Queryable,
    from: number | null,
    scope: 'tenant' | 'shared',
    schema: string,
  ): Promise<void> {
    if (from === this.#target) return;
    const change = this.#plans.change(this.#versions, from);
    const plan = scope === 'shared' ? change.shared : change.tenant;
    if (plan.destructive.length > 0 && !this.#options.allowDestructive) {
      throw new MigrationRefusedError([], plan.destructive);
    }
    await tx.query("SELECT set_config('lock_timeout', $1, true)", [this.#lockTimeout]);
    const runtimeRole = this.#deps.config.current.database.runtimeRole;
    for (const statement of plan.statements({ schema, runtimeRole })) await tx.query(statement);
  }

  async #migrateShared(): Promise<void> {
    await this.#deps.db.owner.withSession((session) =>
      session.transaction(async (tx) => {
        const from = await lockedStorageVersion(tx, 'shared');
        await this.#apply(tx, from, 'shared', SHARED_SCHEMA);
        await setStorageVersion(tx, 'shared', this.#target);
      }),
    );
  }

  async #migrateRow(): Promise<void> {
    const target = this.#target;
    await this.#deps.db.owner.withSession((session) =>
      session.transaction(async (tx) => {
        // Locks out row tenants being created meanwhile: they read this version in their transaction.
        const from = await lockedStorageVersion(tx, 'row');
        await this.#apply(tx, from, 'tenant', ROW_SCHEMA);
        await setStorageVersion(tx, 'row', target);
        await tx.query(
          `UPDATE tenantry.tenants SET schema_version = $1, migration_error = NULL
              WHERE isolation = 'row' AND status <> 'deleted' AND schema_version IS DISTINCT FROM $1`,
          [target],
        );
        await this.#deps.bus.announce(tx, { kind: 'entities' });
      }),
    );
  }

  async #migrateTenant(unit: TenantUnit): Promise<void> {
    await this.#deps.locks.with(
      unit.id,
      async (session) => {
        const placement = placementOf(unit);
        if (unit.isolation === 'schema') await this.#migrateSchemaTenant(session, unit.id);
        else if ((await this.#migrateDatabaseTenant(session, unit.id, placement)) === 'gone') return;
        this.#deps.bus.applied({ kind: 'tenant', tenantId: unit.id });
      },
      { wait: false },
    );
  }

  async #migrateSchemaTenant(session: Session, tenantId: string): Promise<void> {
    await session.transaction(async (tx) => {
      const from = await lockedTenantVersion(tx, tenantId);
      if (from === 'gone') return;
      await this.#apply(tx, from, 'tenant', tenantSchemaName(tenantId));
      await markTenantCurrent(tx, tenantId, this.#target);
      await this.#deps.bus.announce(tx, { kind: 'tenant', tenantId });
    });
  }

  async #migrateDatabaseTenant(
    session: Session,
    tenantId: string,
    placement: TenantPlacement,
  ): Promise<'gone' | 'migrated'> {
    const { databases, servers, bus } = this.#deps;
    const target = this.#target;
    if (!databases) throw new Error('database tenants need PostgreSQL');
    const from = await lockedTenantVersion(session, tenantId);
    if (from === 'gone') return 'gone';
    // Known before the pool needs it: this session holds the tenant lock.
    await servers.urls(placement.server ?? 'main', session);
    const version = this.#versions.get(target)!;
    // The tenant database records its own version in the same transaction as its DDL, so a
    // crash between it and the control plane is healed here: its own record wins.
    await databases.use(databaseLocation(placement), 'owner', (owner) =>
      owner.transaction(async (tx) => {
        const ledger = await readDatabaseLedger(tx, true);
        await this.#apply(tx, ledger?.version ?? from, 'tenant', ROW_SCHEMA);
        if (ledger?.version !== target)
          await writeDatabaseLedger(tx, { version: target, digest: version.digest });
      }),
    );
    await session.transaction(async (tx) => {
      await markTenantCurrent(tx, tenantId, target);
      await bus.announce(tx, { kind: 'tenant', tenantId });
    });
    return 'migrated';
  }
}

async function lockedStorageVersion(tx: Queryable, storage: 'row' | 'shared'): Promise<number | null> {
  const { rows } = await tx.query<{ version: number }>(
    'SELECT version FROM tenantry.storage_versions WHERE storage = $1 FOR UPDATE',
    [storage],
  );
  return rows[0] === undefined ? null : Number(rows[0].version);
}

async function lockedTenantVersion(tx: Queryable, tenantId: string): Promise<number | null | 'gone'> {
  const { rows } = await tx.query<{ schema_version: number | null; status: string }>(
    'SELECT schema_version, status FROM tenantry.tenants WHERE id = $1',
    [tenantId],
  );
  const row = rows[0];
  if (!row || row.status === 'deleted' || row.status === 'provisioning' || row.status === 'restoring')
    return 'gone';
  return row.schema_version === null ? null : Number(row.schema_version);
}

async function markTenantCurrent(tx: Queryable, tenantId: string, target: number): Promise<void> {
  await tx.query(
    'UPDATE tenantry.tenants SET schema_version = $2, migration_error = NULL, updated_at = now() WHERE id = $1',
    [tenantId, target],
  );
}
