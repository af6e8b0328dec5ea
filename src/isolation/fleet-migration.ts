import type { TenantryConfig } from '../config/config-schema.js';
import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { Database, Queryable, Session } from '../db/database.js';
import type { Entity } from '../entities/entity.js';
import { registerVersion, setStorageVersion, storageVersion } from '../entities/entity-ledger.js';
import {
  type DestructiveChange,
  type EntityChange,
  type MigrationProblem,
  planEntityChange,
} from '../entities/entity-migration.js';
import { type EntityVersion, entitiesDigest, loadVersions } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { IsolationLevel } from '../tenants/tenant.js';
import type { DatabaseServers } from './database-servers.js';
import type { TenantDatabases } from './tenant-databases.js';
import type { TenantLocks } from './tenant-locks.js';
import {
  databaseLocation,
  placementOf,
  ROW_SCHEMA,
  SHARED_SCHEMA,
  tenantSchemaName,
} from './tenant-placement.js';
import { readDatabaseLedger, writeDatabaseLedger } from './tenant-provisioner.js';

/** The declaration cannot be applied as it is (the CLI exits 2); nothing was changed. */
export class MigrationRefusedError extends TenantryError {
  constructor(
    readonly problems: readonly MigrationProblem[],
    readonly destructive: readonly DestructiveChange[],
  ) {
    const lines = [
      ...problems.map((problem) => problem.message),
      ...destructive.map((change) => `destructive: ${change.change}`),
    ];
    super(
      'validation_failed',
      `the declared entities cannot be migrated as they are:\n  ${lines.join('\n  ')}` +
        (problems.length === 0 ? '\nrerun with --allow-destructive to apply destructive changes' : ''),
      { field: 'entities' },
    );
    this.name = 'MigrationRefusedError';
  }
}

/** Another `tenantry migrate` holds the fleet lock. */
export class MigrationRunningError extends TenantryError {
  constructor() {
    super('conflict', 'another `tenantry migrate` is running on this database; wait for it, or pass --wait');
    this.name = 'MigrationRunningError';
  }
}

export interface MigrateOptions {
  /** Tenants migrated at once (default 4). */
  readonly concurrency?: number;
  /** Migrate this many tenants (after the shared tables) and stop. */
  readonly canary?: number;
  readonly allowDestructive?: boolean;
  /** How long one tenant's DDL waits for a table lock before that tenant fails (default 10 s). */
  readonly lockTimeoutMs?: number;
  /** Wait for a running migration instead of refusing. */
  readonly wait?: boolean;
  /** Stop taking new tenants (the ones in flight finish or roll back). */
  readonly signal?: AbortSignal;
  readonly onProgress?: (progress: MigrateProgress) => void;
}

export interface MigrateProgress {
  readonly total: number;
  readonly done: number;
  readonly failed: number;
  /** The unit just finished. */
  readonly unit: string;
  readonly error?: string;
}

export interface FailedUnit {
  readonly unit: string;
  readonly tenantId: string | null;
  readonly slug: string | null;
  readonly error: string;
}

export interface MigrateReport {
  readonly targetVersion: number;
  /** Units (shared tables, row-level tables, tenants with tables of their own) that were behind. */
  readonly total: number;
  readonly migrated: number;
  readonly failed: readonly FailedUnit[];
  /** Units not attempted (canary, interruption). */
  readonly remaining: number;
  /** Tenants with tables of their own that were already current. */
  readonly upToDate: number;
  readonly interrupted: boolean;
  readonly canary: boolean;
  readonly durationMs: number;
}

export interface PlannedChange {
  readonly fromVersion: number | null;
  readonly units: { shared: boolean; row: boolean; schema: number; database: number };
  readonly changes: readonly string[];
  readonly destructive: readonly DestructiveChange[];
  readonly sql: { shared: string[]; row: string[]; schema: string[]; database: string[] };
}

export interface MigrationPlanReport {
  readonly targetVersion: number;
  /** Whether the target is a new version (registered when the plan is applied). */
  readonly newVersion: boolean;
  readonly plans: readonly PlannedChange[];
  readonly problems: readonly MigrationProblem[];
}

type Unit =
  | { readonly kind: 'shared'; readonly from: number }
  | { readonly kind: 'row'; readonly from: number }
  | {
      readonly kind: 'tenant';
      readonly id: string;
      readonly slug: string;
      readonly isolation: IsolationLevel;
      readonly server: string | null;
      readonly from: number | null;
    };

function describe(unit: Unit): string {
  if (unit.kind === 'shared') return 'shared tables';
  if (unit.kind === 'row') return 'row-level tables (all row tenants)';
  return `tenant ${unit.slug} (${unit.id}, ${unit.isolation})`;
}

interface Dependencies {
  readonly db: Database;
  readonly config: TenantryConfig;
  readonly bus: ChangeBus;
  readonly locks: TenantLocks;
  readonly databases: TenantDatabases | undefined;
  readonly servers: DatabaseServers;
}

const OWN_STORAGE = "isolation IN ('schema', 'database') AND status IN ('active', 'inactive')";

/**
 * `tenantry migrate`: brings every tenant's tables to the declared entities. The version ledger
 * says which tenants are behind, so current tenants cost nothing; each behind tenant migrates
 * in its own transaction under its own lock, from the plan of its version; a failure rolls that
 * tenant back, is recorded, and the others go on. A rerun picks up whatever is still behind.
 */
export class FleetMigration {
  readonly #deps: Dependencies;
  readonly #code: readonly Entity[];

  constructor(deps: Dependencies) {
    this.#deps = deps;
    this.#code = deps.config.entities;
  }

  /** What `migrate` would do, with its SQL per isolation level; changes nothing. */
  async plan(): Promise<MigrationPlanReport> {
    const { db } = this.#deps;
    const versions = new Map((await loadVersions(db.owner)).map((v) => [v.version, v]));
    const target = this.#target(versions);
    const sources = await this.#sources(db.owner, target.version);
    const plans: PlannedChange[] = [];
    const problems: MigrationProblem[] = [];
    for (const [from, units] of sources) {
      const change = this.#change(versions, from);
      problems.push(...change.tenant.problems, ...change.shared.problems);
      const tenantSql = (schema: string) =>
        change.tenant.statements({
          schema,
          runtimeRole: db.owner ? this.#deps.config.database.runtimeRole : '',
        });
      plans.push({
        fromVersion: from,
        units,
        changes: [...change.shared.changes.map((c) => `shared: ${c}`), ...change.tenant.changes],
        destructive: [...change.shared.destructive, ...change.tenant.destructive],
        sql: {
          shared: units.shared
            ? change.shared.statements({ schema: SHARED_SCHEMA, runtimeRole: this.#role })
            : [],
          row: units.row ? tenantSql(ROW_SCHEMA) : [],
          schema: units.schema > 0 ? tenantSql('t_<tenant id>') : [],
          database: units.database > 0 ? tenantSql(ROW_SCHEMA) : [],
        },
      });
    }
    return { targetVersion: target.version, newVersion: target.isNew, plans, problems: dedupe(problems) };
  }

  get #role(): string {
    return this.#deps.config.database.runtimeRole;
  }

  async migrate(options: MigrateOptions = {}): Promise<MigrateReport> {
    const { db } = this.#deps;
    return db.owner.withSession(async (session) => {
      await this.#lockFleet(session, options.wait ?? false);
      try {
        return await this.#run(session, options);
      } finally {
        await session.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, LockKey.FLEET_MIGRATION]);
      }
    });
  }

  async #lockFleet(session: Session, wait: boolean): Promise<void> {
    const key = [LOCK_NAMESPACE, LockKey.FLEET_MIGRATION];
    if (wait) {
      await session.query('SELECT pg_advisory_lock($1, $2)', key);
      return;
    }
    const { rows } = await session.query<{ locked: boolean }>(
      'SELECT pg_try_advisory_lock($1, $2) AS locked',
      key,
    );
    if (!rows[0]?.locked) throw new MigrationRunningError();
  }

  async #run(session: Session, options: MigrateOptions): Promise<MigrateReport> {
    const started = Date.now();
    const versions = new Map((await loadVersions(session)).map((v) => [v.version, v]));
    const target = this.#target(versions);
    const sources = await this.#sources(session, target.version);
    const problems: MigrationProblem[] = [];
    const destructive: DestructiveChange[] = [];
    for (const from of sources.keys()) {
      const change = this.#change(versions, from);
      problems.push(...change.tenant.problems, ...change.shared.problems);
      destructive.push(...change.tenant.destructive, ...change.shared.destructive);
    }
    if (problems.length > 0 || (destructive.length > 0 && !options.allowDestructive)) {
      throw new MigrationRefusedError(dedupe(problems), options.allowDestructive ? [] : dedupe(destructive));
    }
    const registered = await registerVersion(session, this.#code);
    versions.set(registered.version, registered);
    const targetVersion = registered.version;

    const units = await this.#units(session, targetVersion);
    const upToDate = await this.#countCurrent(session, targetVersion);
    const tenantUnits = units.filter((unit) => unit.kind !== 'shared');
    const canary = options.canary !== undefined && options.canary < tenantUnits.length;
    const selected = canary
      ? [...units.filter((unit) => unit.kind === 'shared'), ...tenantUnits.slice(0, options.canary)]
      : units;

    const failed: FailedUnit[] = [];
    let done = 0;
    let attempted = 0;
    const queue = [...selected];
    // A database tenant in flight leases one tenant-database pool: never more workers than pools.
    const concurrency = Math.max(
      1,
      Math.min(options.concurrency ?? 4, 64, this.#deps.databases?.maxPools ?? 64),
    );
    const runOne = async (unit: Unit) => {
      attempted += 1;
      let error: string | undefined;
      try {
        await this.#migrateUnit(unit, versions, targetVersion, options);
      } catch (cause) {
        error = cause instanceof Error ? cause.message : String(cause);
        failed.push({
          unit: describe(unit),
          tenantId: unit.kind === 'tenant' ? unit.id : null,
          slug: unit.kind === 'tenant' ? unit.slug : null,
          error,
        });
        if (unit.kind === 'tenant') await this.#recordFailure(unit.id, error);
      }
      done += 1;
      options.onProgress?.({
        total: selected.length,
        done,
        failed: failed.length,
        unit: describe(unit),
        ...(error ? { error } : {}),
      });
    };
    // The shared tables first and alone: every tenant's code reads them.
    const shared = queue[0]?.kind === 'shared' ? queue.shift() : undefined;
    if (shared && !options.signal?.aborted) await runOne(shared);
    const worker = async () => {
      for (let unit = queue.shift(); unit && !options.signal?.aborted; unit = queue.shift())
        await runOne(unit);
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, Math.max(1, queue.length)) }, worker));
    await this.#deps.bus.announce(session, { kind: 'entities' });
    this.#deps.bus.applied({ kind: 'entities' });
    return {
      targetVersion,
      total: units.length,
      migrated: done - failed.length,
      failed,
      remaining: units.length - attempted,
      upToDate,
      interrupted: options.signal?.aborted ?? false,
      canary,
      durationMs: Date.now() - started,
    };
  }

  /** The version the code's declaration is, or would be once registered. */
  #target(versions: Map<number, EntityVersion>): { version: number; isNew: boolean } {
    const latest = Math.max(0, ...versions.keys());
    const digest = entitiesDigest(this.#code);
    if (latest > 0 && versions.get(latest)!.digest === digest) return { version: latest, isNew: false };
    return { version: latest + 1, isNew: true };
  }

  /** The versions behind the target, with which storage is at each. */
  async #sources(db: Queryable, target: number): Promise<Map<number | null, PlannedChange['units']>> {
    const sources = new Map<number | null, PlannedChange['units']>();
    const entry = (from: number | null) => {
      let units = sources.get(from);
      if (!units) {
        units = { shared: false, row: false, schema: 0, database: 0 };
        sources.set(from, units);
      }
      return units;
    };
    const shared = await storageVersion(db, 'shared');
    if (shared !== target) entry(shared ?? null).shared = true;
    const row = await storageVersion(db, 'row');
    if (row !== target) entry(row ?? null).row = true;
    const { rows } = await db.query<{ version: number | null; isolation: IsolationLevel; count: number }>(
      `SELECT schema_version AS version, isolation, count(*)::int AS count FROM tenantry.tenants
        WHERE ${OWN_STORAGE} AND schema_version IS DISTINCT FROM $1 GROUP BY 1, 2`,
      [target],
    );
    for (const r of rows) {
      const units = entry(r.version === null ? null : Number(r.version));
      if (r.isolation === 'schema') units.schema += Number(r.count);
      else units.database += Number(r.count);
    }
    return sources;
  }

  readonly #plans = new Map<number | null, EntityChange>();

  #change(versions: Map<number, EntityVersion>, from: number | null): EntityChange {
    let change = this.#plans.get(from);
    if (!change) {
      const before = from === null ? [] : versions.get(from)?.entities;
      if (!before) throw new TenantryError('conflict', `entity version ${from} is not in the ledger`);
      change = planEntityChange(before, this.#code);
      this.#plans.set(from, change);
    }
    return change;
  }

  async #units(db: Queryable, target: number): Promise<Unit[]> {
    const units: Unit[] = [];
    const shared = await storageVersion(db, 'shared');
    if (shared !== target) units.push({ kind: 'shared', from: shared ?? 0 });
    const { rows } = await db.query<{
      id: string;
      slug: string;
      isolation: IsolationLevel;
      server: string | null;
      schema_version: number | null;
    }>(
      `SELECT id, slug, isolation, server, schema_version FROM tenantry.tenants
        WHERE ${OWN_STORAGE} AND schema_version IS DISTINCT FROM $1 ORDER BY id`,
      [target],
    );
    for (const row of rows) {
      units.push({
        kind: 'tenant',
        id: row.id,
        slug: row.slug,
        isolation: row.isolation,
        server: row.server,
        from: row.schema_version === null ? null : Number(row.schema_version),
      });
    }
    const row = await storageVersion(db, 'row');
    const { rows: behind } = await db.query(
      `SELECT 1 FROM tenantry.tenants WHERE isolation = 'row' AND status <> 'deleted'
          AND schema_version IS DISTINCT FROM $1 LIMIT 1`,
      [target],
    );
    if (row !== target || behind.length > 0) units.push({ kind: 'row', from: row ?? 0 });
    return units;
  }

  async #countCurrent(db: Queryable, target: number): Promise<number> {
    const { rows } = await db.query<{ count: number }>(
      `SELECT count(*)::int AS count FROM tenantry.tenants WHERE ${OWN_STORAGE} AND schema_version = $1`,
      [target],
    );
    return Number(rows[0]?.count ?? 0);
  }

  async #migrateUnit(
    unit: Unit,
    versions: Map<number, EntityVersion>,
    target: number,
    options: MigrateOptions,
  ): Promise<void> {
    const lockTimeout = `${Math.trunc(options.lockTimeoutMs ?? 10_000)}ms`;
    const { db, bus } = this.#deps;
    const apply = async (tx: Queryable, from: number | null, scope: 'tenant' | 'shared', schema: string) => {
      if (from === target) return;
      const change = this.#change(versions, from);
      const plan = scope === 'shared' ? change.shared : change.tenant;
      if (plan.destructive.length > 0 && !options.allowDestructive) {
        throw new MigrationRefusedError([], plan.destructive);
      }
      await tx.query("SELECT set_config('lock_timeout', $1, true)", [lockTimeout]);
      for (const statement of plan.statements({ schema, runtimeRole: this.#role })) await tx.query(statement);
    };

    if (unit.kind === 'shared') {
      await db.owner.withSession((session) =>
        session.transaction(async (tx) => {
          const from = await lockedStorageVersion(tx, 'shared');
          await apply(tx, from, 'shared', SHARED_SCHEMA);
          await setStorageVersion(tx, 'shared', target);
        }),
      );
      return;
    }
    if (unit.kind === 'row') {
      await db.owner.withSession((session) =>
        session.transaction(async (tx) => {
          // Locks out row tenants being created meanwhile: they read this version in their transaction.
          const from = await lockedStorageVersion(tx, 'row');
          await apply(tx, from, 'tenant', ROW_SCHEMA);
          await setStorageVersion(tx, 'row', target);
          await tx.query(
            `UPDATE tenantry.tenants SET schema_version = $1, migration_error = NULL
              WHERE isolation = 'row' AND status <> 'deleted' AND schema_version IS DISTINCT FROM $1`,
            [target],
          );
          await bus.announce(tx, { kind: 'entities' });
        }),
      );
      return;
    }
    await this.#deps.locks.with(
      unit.id,
      async (session) => {
        const placement = placementOf(unit);
        if (unit.isolation === 'schema') {
          await session.transaction(async (tx) => {
            const from = await lockedTenantVersion(tx, unit.id);
            if (from === 'gone') return;
            await apply(tx, from, 'tenant', tenantSchemaName(unit.id));
            await markTenantCurrent(tx, unit.id, target);
            await bus.announce(tx, { kind: 'tenant', tenantId: unit.id });
          });
        } else {
          const databases = this.#deps.databases;
          if (!databases) throw new Error('database tenants need PostgreSQL');
          const from = await lockedTenantVersion(session, unit.id);
          if (from === 'gone') return;
          // Known before the pool needs it: this session holds the tenant lock.
          await this.#deps.servers.urls(placement.server ?? 'main', session);
          const version = versions.get(target)!;
          // The tenant database records its own version in the same transaction as its DDL, so a
          // crash between it and the control plane is healed here: its own record wins.
          await databases.use(databaseLocation(placement), 'owner', (owner) =>
            owner.transaction(async (tx) => {
              const ledger = await readDatabaseLedger(tx, true);
              await apply(tx, ledger?.version ?? from, 'tenant', ROW_SCHEMA);
              if (ledger?.version !== target)
                await writeDatabaseLedger(tx, { version: target, digest: version.digest });
            }),
          );
          await session.transaction(async (tx) => {
            await markTenantCurrent(tx, unit.id, target);
            await bus.announce(tx, { kind: 'tenant', tenantId: unit.id });
          });
        }
        bus.applied({ kind: 'tenant', tenantId: unit.id });
      },
      { wait: false },
    );
  }

  async #recordFailure(tenantId: string, error: string): Promise<void> {
    await this.#deps.db.owner
      .query('UPDATE tenantry.tenants SET migration_error = $2 WHERE id = $1', [
        tenantId,
        error.slice(0, 2000),
      ])
      .catch(() => undefined);
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
  if (!row || row.status === 'deleted' || row.status === 'provisioning') return 'gone';
  return row.schema_version === null ? null : Number(row.schema_version);
}

async function markTenantCurrent(tx: Queryable, tenantId: string, target: number): Promise<void> {
  await tx.query(
    'UPDATE tenantry.tenants SET schema_version = $2, migration_error = NULL, updated_at = now() WHERE id = $1',
    [tenantId, target],
  );
}

function dedupe<T>(items: readonly T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = JSON.stringify(item);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
