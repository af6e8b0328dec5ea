import { tenantLockKey } from '../db/advisory-locks.js';
import type { Queryable } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
import { QuotaExceededError } from '../runtime/quota.js';
import type { EntityDb } from './entity-db.js';

/** Row limits of a tenant (`limits.maxRowsPerEntity`, `limits.maxRows`), and the entities counted in the total. */
export interface RowQuota {
  readonly perEntity: number | undefined;
  readonly total: number | undefined;
  /** Every tenant entity the tenant's tables have. */
  readonly entities: readonly string[];
  /** The tenant's slug, which a refusal carries to the metrics. */
  readonly tenantSlug: string;
}

const QUOTA_LOCK_NAMESPACE = 0x54_4e_54_51; // 'TNTQ'

/** The tenant's rows in each of `entities` (its tables, in its schema), in one statement. */
export async function countTenantRows(
  queryable: Queryable,
  db: EntityDb,
  entities: readonly string[],
): Promise<Record<string, number>> {
  if (entities.length === 0) return {};
  const counts = entities.map(
    (name) =>
      `(SELECT count(*) FROM ${qualified(db.placement.schema, name)} WHERE tenant_id = $1::uuid) AS ${quoteIdent(name)}`,
  );
  const { rows } = await queryable.query<Record<string, number>>(`SELECT ${counts.join(', ')}`, [
    db.tenantId,
  ]);
  return Object.fromEntries(entities.map((name) => [name, Number(rows[0]?.[name] ?? 0)]));
}

/**
 * Refuses `adding` more rows of `entity` beyond the quota. The tenant's writers take turns (a
 * transaction-level advisory lock), so two inserts cannot both take the last places.
 */
export async function enforceRowQuota(
  tx: Queryable,
  db: EntityDb,
  entity: string,
  adding: number,
  quota: RowQuota,
): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [QUOTA_LOCK_NAMESPACE, tenantLockKey(db.tenantId)]);
  const counts = await countTenantRows(tx, db, quota.total === undefined ? [entity] : quota.entities);
  const own = counts[entity] ?? 0;
  if (quota.perEntity !== undefined && own + adding > quota.perEntity) {
    throw new QuotaExceededError(
      quota.tenantSlug,
      'maxRowsPerEntity',
      `${entity} may hold ${quota.perEntity} rows for this tenant (it has ${own})`,
    );
  }
  const total = Object.values(counts).reduce((sum, value) => sum + Number(value), 0);
  if (quota.total !== undefined && total + adding > quota.total) {
    throw new QuotaExceededError(
      quota.tenantSlug,
      'maxRows',
      `this tenant may hold ${quota.total} rows in all (it has ${total})`,
    );
  }
}
