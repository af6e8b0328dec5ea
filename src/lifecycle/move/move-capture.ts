import { LOCK_NAMESPACE, LockKey, MOVE_FENCE_NAMESPACE, tenantLockKey } from '../../db/advisory-locks.js';
import type { Queryable } from '../../db/database.js';
import { qualified, quoteIdent } from '../../db/identifiers.js';
import { SqlState } from '../../db/sqlstate.js';
import type { Entity } from '../../entities/entity.js';
import type { TenantPlacement } from '../../isolation/tenant-placement.js';

/**
 * The SQLSTATE a write of a moved tenant gets from its old copy: the copy is sealed, the tenant
 * serves from its new place. Tenant handles retry the write there (`TenantDataAccess`).
 */
const SEALED_SQLSTATE = SqlState.TENANT_SEALED;

const CAPTURE_SCHEMA = 'tenantry_move';

/**
 * What captures a moving tenant's writes, in the database of its source copy. The owner makes it
 * and owns it; the runtime role cannot read it (no grant): the trigger function runs as its owner.
 *
 * The trigger of every write, for the moving tenant only:
 * 1. takes the tenant's write fence shared: the move's freeze takes it exclusive, so a write
 *    waits for the freeze and the freeze waits for the writes already running (no write slips
 *    between the move's last catch-up and its flip);
 * 2. refuses the write when the copy is sealed (the tenant moved away: a process that has not
 *    heard yet must not write to the copy nobody reads);
 * 3. notes the row's key, for the catch-up to copy again.
 * Each statement of the function takes a new snapshot (READ COMMITTED, which every tenant
 * transaction is): a writer that waited for the freeze sees the seal it committed.
 */
const CAPTURE_DDL = [
  `CREATE SCHEMA IF NOT EXISTS ${CAPTURE_SCHEMA}`,
  `REVOKE ALL ON SCHEMA ${CAPTURE_SCHEMA} FROM PUBLIC`,
  `CREATE TABLE IF NOT EXISTS ${CAPTURE_SCHEMA}.changes (
     seq bigserial PRIMARY KEY,
     tenant_id uuid NOT NULL,
     entity text NOT NULL,
     id uuid NOT NULL
   )`,
  `CREATE INDEX IF NOT EXISTS changes_tenant_idx ON ${CAPTURE_SCHEMA}.changes (tenant_id, seq)`,
  `CREATE TABLE IF NOT EXISTS ${CAPTURE_SCHEMA}.sealed (
     tenant_id uuid PRIMARY KEY,
     until timestamptz NOT NULL
   )`,
  `CREATE OR REPLACE FUNCTION ${CAPTURE_SCHEMA}.capture() RETURNS trigger
     LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
   DECLARE
     row_tenant uuid;
     row_id uuid;
   BEGIN
     -- The move dropping this copy's rows, sealed against every other writer until they are gone.
     IF current_setting('tenantry.move_dropping', true) = coalesce(OLD.tenant_id, NEW.tenant_id)::text THEN
       RETURN NULL;
     END IF;
     IF TG_OP = 'DELETE' THEN
       row_tenant := OLD.tenant_id;
       row_id := OLD.id;
     ELSE
       row_tenant := NEW.tenant_id;
       row_id := NEW.id;
     END IF;
     PERFORM pg_advisory_xact_lock_shared(TG_ARGV[0]::int, TG_ARGV[1]::int);
     IF EXISTS (SELECT 1 FROM ${CAPTURE_SCHEMA}.sealed s
                 WHERE s.tenant_id = row_tenant AND s.until > clock_timestamp()) THEN
       RAISE EXCEPTION 'tenant % has moved: its writes go to its new place', row_tenant
         USING ERRCODE = '${SEALED_SQLSTATE}';
     END IF;
     INSERT INTO ${CAPTURE_SCHEMA}.changes (tenant_id, entity, id) VALUES (row_tenant, TG_TABLE_NAME, row_id);
     IF TG_OP = 'UPDATE' AND OLD.id IS DISTINCT FROM NEW.id THEN
       INSERT INTO ${CAPTURE_SCHEMA}.changes (tenant_id, entity, id) VALUES (row_tenant, TG_TABLE_NAME, OLD.id);
     END IF;
     RETURN NULL;
   END
   $$`,
  `REVOKE ALL ON FUNCTION ${CAPTURE_SCHEMA}.capture() FROM PUBLIC`,
  // Once per statement, even one that touches no row: a process that has not heard of the flip
  // must not be told "no such row" by the old copy for a row that exists at the new place.
  `CREATE OR REPLACE FUNCTION ${CAPTURE_SCHEMA}.guard() RETURNS trigger
     LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
   BEGIN
     IF current_setting('tenantry.tenant_id', true) = TG_ARGV[0]
        AND current_setting('tenantry.move_dropping', true) IS DISTINCT FROM TG_ARGV[0]
        AND EXISTS (SELECT 1 FROM ${CAPTURE_SCHEMA}.sealed s
                     WHERE s.tenant_id = TG_ARGV[0]::uuid AND s.until > clock_timestamp()) THEN
       RAISE EXCEPTION 'tenant % has moved: its writes go to its new place', TG_ARGV[0]
         USING ERRCODE = '${SEALED_SQLSTATE}';
     END IF;
     RETURN NULL;
   END
   $$`,
  `REVOKE ALL ON FUNCTION ${CAPTURE_SCHEMA}.guard() FROM PUBLIC`,
];

function triggerName(tenantId: string, event: 'i' | 'u' | 'd' | 's'): string {
  return `tenantry_move_${tenantId.replaceAll('-', '')}_${event}`;
}

/** The tenant's tables at its placement, one per tenant entity. */
export function tenantTables(placement: TenantPlacement, entities: readonly Entity[]): string[] {
  return entities
    .filter((entity) => entity.scope === 'tenant')
    .map((entity) => qualified(placement.schema, entity.name));
}

/**
 * Starts capturing the tenant's writes to its source copy. CREATE TRIGGER waits for the writes
 * already running on each table (it conflicts with them), so once this commits every later write
 * is either in a snapshot taken afterwards or noted. Idempotent.
 */
export async function installCapture(
  tx: Queryable,
  placement: TenantPlacement,
  entities: readonly Entity[],
): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, LockKey.MOVE_CAPTURE]);
  for (const statement of CAPTURE_DDL) await tx.query(statement);
  const id = placement.tenantId;
  const fence = `'${MOVE_FENCE_NAMESPACE}', '${tenantLockKey(id)}'`;
  const tenant = `'${id}'::uuid`;
  for (const table of tenantTables(placement, entities)) {
    const on = (event: 'i' | 'u' | 'd', when: string, what: string) =>
      `CREATE OR REPLACE TRIGGER ${quoteIdent(triggerName(id, event))} AFTER ${what} ON ${table}
         FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION ${CAPTURE_SCHEMA}.capture(${fence})`;
    await tx.query(on('i', `NEW.tenant_id = ${tenant}`, 'INSERT'));
    await tx.query(on('u', `OLD.tenant_id = ${tenant} OR NEW.tenant_id = ${tenant}`, 'UPDATE'));
    await tx.query(on('d', `OLD.tenant_id = ${tenant}`, 'DELETE'));
    await tx.query(
      `CREATE OR REPLACE TRIGGER ${quoteIdent(triggerName(id, 's'))} BEFORE INSERT OR UPDATE OR DELETE ON ${table}
         FOR EACH STATEMENT EXECUTE FUNCTION ${CAPTURE_SCHEMA}.guard('${id}')`,
    );
  }
}

/**
 * Stops capturing (the move was rolled back, or its source is about to be dropped) and forgets its
 * notes and seal. The triggers are found by name, whatever entities the tables are at now.
 */
export async function removeCapture(tx: Queryable, tenantId: string): Promise<void> {
  const { rows } = await tx.query<{ table_name: string; trigger: string }>(
    `SELECT tgrelid::regclass::text AS table_name, tgname AS trigger FROM pg_trigger
      WHERE NOT tgisinternal AND tgname LIKE $1`,
    [`tenantry_move_${tenantId.replaceAll('-', '')}_%`],
  );
  for (const row of rows) {
    await tx.query(`DROP TRIGGER IF EXISTS ${quoteIdent(row.trigger)} ON ${row.table_name}`);
  }
  if (await captureExists(tx)) {
    await tx.query(`DELETE FROM ${CAPTURE_SCHEMA}.changes WHERE tenant_id = $1`, [tenantId]);
    await tx.query(`DELETE FROM ${CAPTURE_SCHEMA}.sealed WHERE tenant_id = $1`, [tenantId]);
  }
}

/**
 * Lets the rest of this transaction delete the tenant's rows from a sealed copy (the move dropping
 * its old row-level copy): every other writer stays refused until the rows are gone.
 */
export async function dropThroughSeal(tx: Queryable, tenantId: string): Promise<void> {
  await tx.query("SELECT set_config('tenantry.move_dropping', $1, true)", [tenantId]);
}

/** Lifts a bounded seal (the flip it guarded did not happen). */
export async function unseal(tx: Queryable, tenantId: string): Promise<void> {
  if (await captureExists(tx)) {
    await tx.query(`DELETE FROM ${CAPTURE_SCHEMA}.sealed WHERE tenant_id = $1`, [tenantId]);
  }
}

async function captureExists(tx: Queryable): Promise<boolean> {
  const { rows } = await tx.query<{ present: string | null }>(
    `SELECT to_regclass('${CAPTURE_SCHEMA}.sealed')::text AS present`,
  );
  return Boolean(rows[0]?.present);
}

/** The last change noted for the tenant (0 before any). */
export async function lastChange(tx: Queryable, tenantId: string): Promise<number> {
  const { rows } = await tx.query<{ last: string | number | null }>(
    `SELECT max(seq) AS last FROM ${CAPTURE_SCHEMA}.changes WHERE tenant_id = $1`,
    [tenantId],
  );
  return Number(rows[0]?.last ?? 0);
}

/** Keys changed after `after`, at most `limit` notes, by entity; `upTo` is the last note read. */
export interface ChangedKeys {
  readonly upTo: number;
  readonly byEntity: ReadonlyMap<string, readonly string[]>;
  readonly notes: number;
}

export async function changedKeys(
  tx: Queryable,
  tenantId: string,
  after: number,
  limit: number,
): Promise<ChangedKeys> {
  const { rows } = await tx.query<{ seq: string | number; entity: string; id: string }>(
    `SELECT seq, entity, id FROM ${CAPTURE_SCHEMA}.changes
      WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
    [tenantId, after, limit],
  );
  const byEntity = new Map<string, Set<string>>();
  for (const row of rows) {
    const ids = byEntity.get(row.entity) ?? new Set<string>();
    byEntity.set(row.entity, ids);
    ids.add(row.id);
  }
  return {
    upTo: rows.length > 0 ? Number(rows.at(-1)!.seq) : after,
    byEntity: new Map([...byEntity].map(([entity, ids]) => [entity, [...ids]])),
    notes: rows.length,
  };
}

/**
 * Holds the tenant's write fence until the transaction ends: the writes running now finish first,
 * the ones that start meanwhile wait (reads go on). This is the move's write freeze.
 */
export async function fenceWrites(tx: Queryable, tenantId: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [MOVE_FENCE_NAMESPACE, tenantLockKey(tenantId)]);
}

/**
 * Seals the tenant's source copy: its writes are refused from the commit on. `seconds` bounds a
 * seal made before the flip commits elsewhere (a move that dies between the two leaves the copy
 * writable again when it runs out); a seal without it lasts until the copy is dropped.
 */
export async function seal(tx: Queryable, tenantId: string, seconds?: number): Promise<void> {
  const until =
    seconds === undefined ? "'infinity'::timestamptz" : `now() + make_interval(secs => ${seconds})`;
  await tx.query(
    `INSERT INTO ${CAPTURE_SCHEMA}.sealed (tenant_id, until) VALUES ($1, ${until})
     ON CONFLICT (tenant_id) DO UPDATE SET until = excluded.until`,
    [tenantId],
  );
}
