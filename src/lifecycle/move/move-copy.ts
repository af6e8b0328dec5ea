import type { Queryable, Transaction } from '../../db/database.js';
import { qualified, quoteIdent } from '../../db/identifiers.js';
import type { Entity } from '../../entities/entity.js';
import { SEARCH_COLUMN, tableModel } from '../../entities/entity-ddl.js';
import { TenantryError } from '../../errors.js';
import { ROW_SCHEMA, type TenantPlacement } from '../../isolation/tenant-placement.js';
import { withKeysRebuilt } from '../restore-load.js';
import { fillOrder } from '../restore-plan.js';
import { CANONICAL_SETTINGS } from '../tenant-backup.js';
import type { ChangedKeys } from './move-capture.js';

/**
 * One end of a move: the transaction it runs in (the owner, with the tenant's settings, so row
 * security keeps every statement to the tenant) and where the tenant's tables are in it.
 */
export interface MoveSide {
  readonly tx: Transaction;
  readonly placement: TenantPlacement;
}

/** Rows and a sum of row hashes per table: what must be equal on both sides. */
export type TableSums = ReadonlyMap<string, { readonly rows: number; readonly sum: string }>;

/** The columns a copy carries, in the entity's order: all but the generated search column. */
export function copiedColumns(entity: Entity): string[] {
  return tableModel(entity)
    .columns.filter((column) => column.name !== SEARCH_COLUMN)
    .map((column) => column.name);
}

function columnList(entity: Entity, alias?: string): string {
  return copiedColumns(entity)
    .map((name) => (alias ? `${alias}.${quoteIdent(name)}` : quoteIdent(name)))
    .join(', ');
}

/**
 * A row's hash over its columns named in the entity's order (not the table's: a table migrated
 * by ALTER TABLE may have them in another order than one made at the version).
 */
function rowHash(entity: Entity, alias: string): string {
  return `hashtextextended(row(${columnList(entity, alias)})::text, 0)`;
}

function tableOf(side: { readonly placement: TenantPlacement }, entity: Entity): string {
  return qualified(side.placement.schema, entity.name);
}

/** Schema and database tenants have tables of their own; row tenants share theirs. */
function hasOwnTables(placement: TenantPlacement): boolean {
  return placement.database !== undefined || placement.schema !== ROW_SCHEMA;
}

function tenantEntities(entities: readonly Entity[]): Entity[] {
  return entities.filter((entity) => entity.scope === 'tenant');
}

/** Sets the output settings that make row text (and so its hash and COPY text) the same everywhere. */
export async function canonical(tx: Queryable): Promise<void> {
  await tx.query(CANONICAL_SETTINGS);
}

export async function tableSums(side: MoveSide, entities: readonly Entity[]): Promise<TableSums> {
  const sums = new Map<string, { rows: number; sum: string }>();
  for (const entity of tenantEntities(entities)) {
    const { rows } = await side.tx.query<{ rows: string | number; sum: string }>(
      `SELECT count(*) AS rows, coalesce(sum(${rowHash(entity, 't')}::numeric), 0)::text AS sum
         FROM ${tableOf(side, entity)} t WHERE ${keyFilter('t', side.placement.tenantId, undefined)}`,
    );
    sums.set(entity.name, { rows: Number(rows[0]?.rows ?? 0), sum: rows[0]?.sum ?? '0' });
  }
  return sums;
}

/** Refuses (and so rolls back) when the two sides' sums differ. */
export function assertSameSums(source: TableSums, target: TableSums): void {
  for (const [table, expected] of source) {
    const actual = target.get(table);
    if (!actual || actual.rows !== expected.rows || actual.sum !== expected.sum) {
      throw new TenantryError(
        'conflict',
        `the copy of ${table} does not match its source (${actual?.rows ?? 0} rows for ${expected.rows}, or their checksums differ): nothing was switched`,
      );
    }
  }
}

/**
 * The tenant's rows into the target, as of the source transaction's snapshot. A target with
 * tables of its own (schema, database) is filled with its keys and indexes dropped and rebuilt
 * after; shared tables (row) take the rows through INSERT, parents before children, references
 * closing a cycle set after. `sameDatabase`: both sides are one transaction. Returns rows copied.
 */
export async function copyAll(
  source: MoveSide,
  target: MoveSide,
  entities: readonly Entity[],
  sameDatabase: boolean,
  onTable: (entity: string, rows: number) => void,
): Promise<number> {
  let copied = 0;
  const fillOne = async (entity: Entity, late: readonly string[]) => {
    const rows = sameDatabase
      ? await insertSelected(source, target, entity, late, undefined)
      : await streamThroughStage(source, target, entity, late, undefined);
    copied += rows;
    onTable(entity.name, rows);
  };
  const order = fillOrder(tenantEntities(entities));
  if (hasOwnTables(target.placement)) {
    await withKeysRebuilt(target.tx, target.placement.schema, entities, async () => {
      for (const { entity } of order) await fillOne(entity, []);
    });
    return copied;
  }
  for (const { entity, late } of order) await fillOne(entity, late);
  for (const { entity, late } of order) {
    if (late.length > 0) await setLate(source, target, entity, late, undefined, sameDatabase);
  }
  return copied;
}

/**
 * The tenant's rows, and of them `ids` (read from the change notes: UUIDs the database typed).
 * Always explicit: row security does not hold a superuser owner back.
 */
function keyFilter(alias: string, tenantId: string, ids: readonly string[] | undefined): string {
  const tenant = `${alias}.tenant_id = '${tenantId}'::uuid`;
  if (ids === undefined) return tenant;
  return `${tenant} AND ${alias}.id = ANY('{${ids.join(',')}}'::uuid[])`;
}

async function insertSelected(
  source: MoveSide,
  target: MoveSide,
  entity: Entity,
  late: readonly string[],
  ids: readonly string[] | undefined,
  upsert = false,
): Promise<number> {
  const columns = copiedColumns(entity);
  const values = columns.map((name) => (late.includes(name) ? 'NULL' : `s.${quoteIdent(name)}`));
  const { rowCount } = await target.tx.query(
    `INSERT INTO ${tableOf(target, entity)} (${columnList(entity)})
     SELECT ${values.join(', ')} FROM ${tableOf(source, entity)} s WHERE ${keyFilter('s', source.placement.tenantId, ids)}${upsert ? onConflict(entity, late) : ''}`,
  );
  return rowCount;
}

function onConflict(entity: Entity, late: readonly string[]): string {
  const updated = copiedColumns(entity).filter(
    (name) => name !== 'tenant_id' && name !== 'id' && !late.includes(name),
  );
  if (updated.length === 0) return ' ON CONFLICT (tenant_id, id) DO NOTHING';
  return ` ON CONFLICT (tenant_id, id) DO UPDATE SET ${updated.map((name) => `${quoteIdent(name)} = excluded.${quoteIdent(name)}`).join(', ')}`;
}

/** The source's rows of the tenant (all, or `ids`) as COPY text. */
function copyOutSql(source: MoveSide, entity: Entity, ids: readonly string[] | undefined): string {
  return `COPY (SELECT ${columnList(entity, 's')} FROM ${tableOf(source, entity)} s WHERE ${keyFilter('s', source.placement.tenantId, ids)}) TO STDOUT`;
}

const STAGE_PREFIX = 'tenantry_move_stage_';

/** The source's rows (all, or `ids`) into a temporary table of the target's transaction, by COPY. */
async function stage(
  source: MoveSide,
  target: MoveSide,
  entity: Entity,
  ids: readonly string[] | undefined,
): Promise<{ table: string; rows: number }> {
  const table = `pg_temp.${quoteIdent(`${STAGE_PREFIX}${entity.name}`)}`;
  await target.tx.query(`DROP TABLE IF EXISTS ${table}`);
  await target.tx.query(
    `CREATE TEMP TABLE ${quoteIdent(`${STAGE_PREFIX}${entity.name}`)} ON COMMIT DROP AS
       SELECT ${columnList(entity)} FROM ${tableOf(target, entity)} WITH NO DATA`,
  );
  const rows = await target.tx.copyIn(
    `COPY ${table} (${columnList(entity)}) FROM STDIN`,
    source.tx.copyOut(copyOutSql(source, entity, ids)),
  );
  return { table, rows };
}

async function streamThroughStage(
  source: MoveSide,
  target: MoveSide,
  entity: Entity,
  late: readonly string[],
  ids: readonly string[] | undefined,
  upsert = false,
): Promise<number> {
  if (hasOwnTables(target.placement) && !upsert) {
    // Empty tables of the tenant's own, keys dropped: COPY straight in.
    return target.tx.copyIn(
      `COPY ${tableOf(target, entity)} (${columnList(entity)}) FROM STDIN`,
      source.tx.copyOut(copyOutSql(source, entity, ids)),
    );
  }
  const staged = await stage(source, target, entity, ids);
  const values = copiedColumns(entity).map((name) =>
    late.includes(name) ? 'NULL' : `s.${quoteIdent(name)}`,
  );
  await target.tx.query(
    `INSERT INTO ${tableOf(target, entity)} (${columnList(entity)})
     SELECT ${values.join(', ')} FROM ${staged.table} s${upsert ? onConflict(entity, late) : ''}`,
  );
  return staged.rows;
}

async function setLate(
  source: MoveSide,
  target: MoveSide,
  entity: Entity,
  late: readonly string[],
  ids: readonly string[] | undefined,
  sameDatabase: boolean,
): Promise<void> {
  const from = sameDatabase
    ? tableOf(source, entity)
    : `pg_temp.${quoteIdent(`${STAGE_PREFIX}${entity.name}`)}`;
  const sets = late.map((name) => `${quoteIdent(name)} = s.${quoteIdent(name)}`).join(', ');
  await target.tx.query(
    `UPDATE ${tableOf(target, entity)} t SET ${sets} FROM ${from} s
      WHERE t.tenant_id = s.tenant_id AND t.id = s.id AND ${keyFilter('s', source.placement.tenantId, ids)}`,
  );
}

/**
 * Makes the target's rows of the changed keys what the source's are now: rows the source has are
 * inserted or updated (parents first, references closing a cycle after), rows it no longer has
 * are deleted (children first). Applying the same keys again changes nothing: a catch-up can be
 * repeated. Returns the keys applied.
 */
export async function applyChanges(
  source: MoveSide,
  target: MoveSide,
  entities: readonly Entity[],
  changes: ChangedKeys,
  sameDatabase: boolean,
): Promise<number> {
  let applied = 0;
  const order = fillOrder(tenantEntities(entities)).filter(({ entity }) => changes.byEntity.has(entity.name));
  for (const { entity, late } of order) {
    const ids = changes.byEntity.get(entity.name)!;
    applied += ids.length;
    if (sameDatabase) await insertSelected(source, target, entity, late, ids, true);
    else await streamThroughStage(source, target, entity, late, ids, true);
  }
  for (const { entity, late } of order) {
    if (late.length > 0) {
      await setLate(source, target, entity, late, changes.byEntity.get(entity.name), sameDatabase);
    }
  }
  for (const { entity } of [...order].reverse()) {
    const ids = changes.byEntity.get(entity.name)!;
    const gone = sameDatabase
      ? `NOT EXISTS (SELECT 1 FROM ${tableOf(source, entity)} s WHERE s.tenant_id = t.tenant_id AND s.id = t.id)`
      : `t.id NOT IN (SELECT id FROM pg_temp.${quoteIdent(`${STAGE_PREFIX}${entity.name}`)})`;
    await target.tx.query(
      `DELETE FROM ${tableOf(target, entity)} t WHERE ${keyFilter('t', target.placement.tenantId, ids)} AND ${gone}`,
    );
  }
  return applied;
}

/**
 * Compares the rows of `keys` on both sides, hash by hash: equal, or the move does not flip.
 * With the checked bulk copy, this proves the target equal to the source: every other row is as
 * the bulk copy left it on both sides.
 */
export async function verifyKeys(
  source: MoveSide,
  target: MoveSide,
  entities: readonly Entity[],
  keys: ReadonlyMap<string, readonly string[]>,
): Promise<void> {
  for (const entity of tenantEntities(entities)) {
    const all = keys.get(entity.name) ?? [];
    for (let start = 0; start < all.length; start += VERIFY_BATCH) {
      await verifyBatch(source, target, entity, all.slice(start, start + VERIFY_BATCH));
    }
  }
}

const VERIFY_BATCH = 5_000;

async function verifyBatch(
  source: MoveSide,
  target: MoveSide,
  entity: Entity,
  ids: readonly string[],
): Promise<void> {
  const read = async (side: MoveSide) => {
    const { rows } = await side.tx.query<{ id: string; hash: string }>(
      `SELECT t.id::text AS id, ${rowHash(entity, 't')}::text AS hash FROM ${tableOf(side, entity)} t WHERE ${keyFilter('t', side.placement.tenantId, ids)}`,
    );
    return new Map(rows.map((row) => [row.id, row.hash]));
  };
  const expected = await read(source);
  const actual = await read(target);
  const differs = ids.filter((id) => expected.get(id) !== actual.get(id));
  if (differs.length > 0) {
    throw new TenantryError(
      'conflict',
      `${differs.length} changed row(s) of ${entity.name} differ between the copy and its source after the catch-up: nothing was switched`,
    );
  }
}
