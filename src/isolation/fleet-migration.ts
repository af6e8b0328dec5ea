import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { Queryable, Session } from '../db/database.js';
import type { Entity } from '../entities/entity.js';
import { registerVersion } from '../entities/entity-ledger.js';
import type { DestructiveChange, MigrationProblem } from '../entities/entity-migration.js';
import { loadVersions } from '../entities/entity-versions.js';
import { MigrationRefusedError, MigrationRunningError } from './migration-errors.js';
import {
  behindVersions,
  dedupe,
  EntityChangePlans,
  type MigrationPlanReport,
  type PlannedChange,
  plannedChange,
  type Versions,
} from './migration-plan.js';
import { countCurrent, describeUnit, type Unit, unitsBehind } from './migration-units.js';
import { type MigrationDependencies, UnitMigration } from './unit-migration.js';

export { MigrationRefusedError, MigrationRunningError } from './migration-errors.js';
export type { MigrationPlanReport, PlannedChange } from './migration-plan.js';

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

/**
 * `tenantry migrate`: brings every tenant's tables to the declared entities. The version ledger
 * says which tenants are behind, so current tenants cost nothing; each behind tenant migrates
 * in its own transaction under its own lock, from the plan of its version; a failure rolls that
 * tenant back, is recorded, and the others go on. A rerun picks up whatever is still behind.
 */
export class FleetMigration {
  readonly #deps: MigrationDependencies;
  readonly #code: readonly Entity[];
  readonly #plans: EntityChangePlans;

  constructor(deps: MigrationDependencies) {
    this.#deps = deps;
    this.#code = deps.config.current.entities;
    this.#plans = new EntityChangePlans(this.#code);
  }

  /** What `migrate` would do, with its SQL per isolation level; changes nothing. */
  async plan(): Promise<MigrationPlanReport> {
    const { db } = this.#deps;
    const versions = new Map((await loadVersions(db.owner)).map((v) => [v.version, v]));
    const target = this.#plans.target(versions);
    const sources = await behindVersions(db.owner, target.version);
    const plans: PlannedChange[] = [];
    const problems: MigrationProblem[] = [];
    for (const [from, units] of sources) {
      const change = this.#plans.change(versions, from);
      problems.push(...change.tenant.problems, ...change.shared.problems);
      const roles = {
        shared: this.#role,
        tenant: db.owner ? this.#deps.config.current.database.runtimeRole : '',
      };
      plans.push(plannedChange(from, units, change, roles));
    }
    return { targetVersion: target.version, newVersion: target.isNew, plans, problems: dedupe(problems) };
  }

  get #role(): string {
    return this.#deps.config.current.database.runtimeRole;
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
    await this.#refuseUnsafe(session, versions, options);
    const registered = await registerVersion(session, this.#code);
    versions.set(registered.version, registered);
    const targetVersion = registered.version;

    const units = await unitsBehind(session, targetVersion);
    const upToDate = await countCurrent(session, targetVersion);
    const tenantUnits = units.filter((unit) => unit.kind !== 'shared');
    const canary = options.canary !== undefined && options.canary < tenantUnits.length;
    const selected = canary
      ? [...units.filter((unit) => unit.kind === 'shared'), ...tenantUnits.slice(0, options.canary)]
      : units;

    const migration = new UnitMigration(this.#deps, this.#plans, versions, targetVersion, options);
    const { done, attempted, failed } = await this.#migrateAll(selected, migration, options);
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

  /** Refuses, before anything changes, a declaration with problems or unallowed destructive changes. */
  async #refuseUnsafe(db: Queryable, versions: Versions, options: MigrateOptions): Promise<void> {
    const target = this.#plans.target(versions);
    const sources = await behindVersions(db, target.version);
    const problems: MigrationProblem[] = [];
    const destructive: DestructiveChange[] = [];
    for (const from of sources.keys()) {
      const change = this.#plans.change(versions, from);
      problems.push(...change.tenant.problems, ...change.shared.problems);
      destructive.push(...change.tenant.destructive, ...change.shared.destructive);
    }
    if (problems.length > 0 || (destructive.length > 0 && !options.allowDestructive)) {
      throw new MigrationRefusedError(dedupe(problems), options.allowDestructive ? [] : dedupe(destructive));
    }
  }

  /** Runs the selected units on a few workers; returns how many finished, were tried, and failed. */
  async #migrateAll(
    selected: readonly Unit[],
    migration: UnitMigration,
    options: MigrateOptions,
  ): Promise<{ done: number; attempted: number; failed: FailedUnit[] }> {
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
        await migration.migrate(unit);
      } catch (cause) {
        error = cause instanceof Error ? cause.message : String(cause);
        failed.push({
          unit: describeUnit(unit),
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
        unit: describeUnit(unit),
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
    return { done, attempted, failed };
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
