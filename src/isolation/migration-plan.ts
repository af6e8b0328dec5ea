import type { Queryable } from '../db/database.js';
import type { Entity } from '../entities/entity.js';
import { storageVersion } from '../entities/entity-ledger.js';
import {
  type DestructiveChange,
  type EntityChange,
  type MigrationProblem,
  planEntityChange,
} from '../entities/entity-migration.js';
import { type EntityVersion, entitiesDigest } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { IsolationLevel } from '../tenants/tenant.js';
import { OWN_STORAGE } from './migration-units.js';
import { ROW_SCHEMA, SHARED_SCHEMA } from './tenant-placement.js';

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

export type Versions = Map<number, EntityVersion>;

/** The change from each version in the ledger to the code's declaration, planned once per version. */
export class EntityChangePlans {
  readonly #code: readonly Entity[];
  readonly #plans = new Map<number | null, EntityChange>();

  constructor(code: readonly Entity[]) {
    this.#code = code;
  }

  /** The version the code's declaration is, or would be once registered. */
  target(versions: Versions): { version: number; isNew: boolean } {
    const latest = Math.max(0, ...versions.keys());
    const digest = entitiesDigest(this.#code);
    if (latest > 0 && versions.get(latest)!.digest === digest) return { version: latest, isNew: false };
    return { version: latest + 1, isNew: true };
  }

  change(versions: Versions, from: number | null): EntityChange {
    let change = this.#plans.get(from);
    if (!change) {
      const before = from === null ? [] : versions.get(from)?.entities;
      if (!before) throw new TenantryError('conflict', `entity version ${from} is not in the ledger`);
      change = planEntityChange(before, this.#code);
      this.#plans.set(from, change);
    }
    return change;
  }
}

/** The versions behind the target, with which storage is at each. */
export async function behindVersions(
  db: Queryable,
  target: number,
): Promise<Map<number | null, PlannedChange['units']>> {
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

/** One source version's change, with its SQL for each kind of storage that is at that version. */
export function plannedChange(
  from: number | null,
  units: PlannedChange['units'],
  change: EntityChange,
  roles: { readonly shared: string; readonly tenant: string },
): PlannedChange {
  const tenantSql = (schema: string) => change.tenant.statements({ schema, runtimeRole: roles.tenant });
  return {
    fromVersion: from,
    units,
    changes: [...change.shared.changes.map((c) => `shared: ${c}`), ...change.tenant.changes],
    destructive: [...change.shared.destructive, ...change.tenant.destructive],
    sql: {
      shared: units.shared
        ? change.shared.statements({ schema: SHARED_SCHEMA, runtimeRole: roles.shared })
        : [],
      row: units.row ? tenantSql(ROW_SCHEMA) : [],
      schema: units.schema > 0 ? tenantSql('t_<tenant id>') : [],
      database: units.database > 0 ? tenantSql(ROW_SCHEMA) : [],
    },
  };
}

export function dedupe<T>(items: readonly T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = JSON.stringify(item);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
