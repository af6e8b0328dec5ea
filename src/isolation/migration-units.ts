import type { Queryable } from '../db/database.js';
import { storageVersion } from '../entities/entity-ledger.js';
import type { IsolationLevel } from '../tenants/tenant.js';

export const OWN_STORAGE = "isolation IN ('schema', 'database') AND status IN ('active', 'inactive')";

export interface TenantUnit {
  readonly kind: 'tenant';
  readonly id: string;
  readonly slug: string;
  readonly isolation: IsolationLevel;
  readonly server: string | null;
  readonly from: number | null;
}

/** What `migrate` brings up to date as one piece: the shared tables, the row-level tables, or one tenant's own. */
export type Unit =
  | { readonly kind: 'shared'; readonly from: number }
  | { readonly kind: 'row'; readonly from: number }
  | TenantUnit;

export function describeUnit(unit: Unit): string {
  if (unit.kind === 'shared') return 'shared tables';
  if (unit.kind === 'row') return 'row-level tables (all row tenants)';
  return `tenant ${unit.slug} (${unit.id}, ${unit.isolation})`;
}

/** The units behind `target`: the shared tables first, the row-level tables last. */
export async function unitsBehind(db: Queryable, target: number): Promise<Unit[]> {
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

/** Tenants with tables of their own that are at `target` already. */
export async function countCurrent(db: Queryable, target: number): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    `SELECT count(*)::int AS count FROM tenantry.tenants WHERE ${OWN_STORAGE} AND schema_version = $1`,
    [target],
  );
  return Number(rows[0]?.count ?? 0);
}
