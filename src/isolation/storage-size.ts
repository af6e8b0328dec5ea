import type { Queryable } from '../db/database.js';
import { qualified } from '../db/identifiers.js';
import type { StorageSize } from '../runtime/storage-meter.js';
import type { IsolationLevel } from '../tenants/tenant.js';
import type { TenantDb } from './tenant-db.js';

export type { StorageSize };

/** How to measure: the tenant's handle, and for row tenants the entity tables it has. */
export interface StorageSizeSource {
  readonly isolation: IsolationLevel;
  readonly db: TenantDb;
  /** The tenant entities its tables have (row tenants: the shared tables measured). */
  readonly tables: readonly string[];
  /**
   * Counts every row of a row-level table, for a table whose statistics know no more rows than
   * the tenant has (never analysed yet, or statistics not flushed: PGlite never flushes them).
   * Undefined when no connection may read past the row policies: the tenant then carries the
   * whole table, an overestimate.
   */
  readonly countAllRows?: (table: string) => Promise<number>;
}

/**
 * Measures a tenant's storage. A schema tenant: the total size of the tables in its schema. A
 * database tenant: `pg_database_size` of its database (which includes PostgreSQL's own catalogue,
 * about 7.5 MB for an empty database). A row tenant shares its tables, so its share is an
 * estimate: for each table, its total size × the tenant's rows / all its rows, all rows taken
 * from the planner's statistics (`reltuples`, live tuples), or counted when those know less.
 */
export async function measureStorageSize(source: StorageSizeSource): Promise<StorageSize> {
  const { db } = source;
  switch (source.isolation) {
    case 'schema': {
      const { rows } = await db.query<{ bytes: string | number }>(
        `SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint AS bytes
           FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1::text AND c.relkind IN ('r', 'm')`,
        [db.placement.schema],
      );
      return { bytes: Number(rows[0]?.bytes ?? 0), estimated: false };
    }
    case 'database': {
      const { rows } = await db.query<{ bytes: string | number }>(
        'SELECT pg_database_size(current_database())::bigint AS bytes',
      );
      return { bytes: Number(rows[0]?.bytes ?? 0), estimated: false };
    }
    case 'row':
      return { bytes: await estimateRowTenantBytes(source), estimated: true };
  }
}

interface TableShare {
  name: string;
  tenant_rows: string | number;
  bytes: string | number;
  statistics_rows: string | number;
  [column: string]: unknown;
}

async function estimateRowTenantBytes(source: StorageSizeSource): Promise<number> {
  const { db, tables } = source;
  if (tables.length === 0) return 0;
  // One statement: the tenant's rows per table (through its policies), the table's size and
  // what the statistics know of all its rows.
  const selects = tables.map(
    (name, index) =>
      `SELECT $${index + 3}::text AS name,
              (SELECT count(*) FROM ${qualified(db.placement.schema, name)} WHERE tenant_id = $1::uuid) AS tenant_rows,
              pg_total_relation_size(c.oid)::bigint AS bytes,
              greatest(c.reltuples::bigint, pg_stat_get_live_tuples(c.oid), 0) AS statistics_rows
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $2::text AND c.relname = $${index + 3}::text`,
  );
  const { rows } = await db.query<TableShare>(selects.join(' UNION ALL '), [
    db.tenantId,
    db.placement.schema,
    ...tables,
  ]);
  let bytes = 0;
  for (const row of rows) {
    const tenantRows = Number(row.tenant_rows);
    if (tenantRows === 0) continue;
    let allRows = Number(row.statistics_rows);
    if (allRows <= tenantRows && source.countAllRows) allRows = await source.countAllRows(row.name);
    bytes += (Number(row.bytes) * tenantRows) / Math.max(allRows, tenantRows);
  }
  return Math.round(bytes);
}

/** Every row of a row-level table, for a connection that may read past the row policies. */
export async function countAllRows(owner: Queryable, schema: string, table: string): Promise<number> {
  const { rows } = await owner.query<{ count: string | number }>(
    `SELECT count(*) AS count FROM ${qualified(schema, table)}`,
  );
  return Number(rows[0]?.count ?? 0);
}

/** Whether the connection's role reads past row-level security (superuser or BYPASSRLS). */
export async function bypassesRowSecurity(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ bypass: boolean }>(
    'SELECT rolsuper OR rolbypassrls AS bypass FROM pg_catalog.pg_roles WHERE rolname = current_user',
  );
  return rows[0]?.bypass === true;
}
