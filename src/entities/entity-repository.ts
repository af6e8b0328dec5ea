import { v7 as uuidv7 } from 'uuid';
import { isCalendarDate } from '../calendar.js';
import { tenantLockKey } from '../db/advisory-locks.js';
import type { Queryable, Row } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
import { constraintOf, SqlState, sqlStateOf } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';
import type { TenantDb } from '../isolation/tenant-db.js';
import { SHARED_SCHEMA } from '../isolation/tenant-placement.js';
import { QuotaExceededError } from '../runtime/quota.js';
import { assertJsonValue, validate } from '../validation.js';
import { type Entity, FIELD_TYPES, type Field, type FieldType, fieldByName } from './entity.js';
import { SEARCH_COLUMN, uniqueConstraintName } from './entity-ddl.js';
import { createInputSchema, patchInputSchema } from './entity-input.js';

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 50;
export const MAX_BATCH = 1000;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SORTABLE_SYSTEM = ['id', 'created_at', 'updated_at'];
const OPERATORS = ['eq', 'gte', 'lte', 'in', 'like'] as const;
type Operator = (typeof OPERATORS)[number];

export interface ListQuery {
  readonly [parameter: string]: string | undefined;
}

export interface Page {
  readonly items: Record<string, unknown>[];
  readonly next: string | null;
}

interface SortKey {
  readonly column: string;
  readonly descending: boolean;
  readonly field: Field | undefined;
}

/** Collects parameters as `$n` placeholders. */
class Params {
  readonly values: unknown[] = [];
  add(value: unknown, cast?: string): string {
    this.values.push(value);
    return cast ? `$${this.values.length}::${cast}` : `$${this.values.length}`;
  }
}

/** The type of a filterable column: a declared field's, or `id` (uuid) and the timestamps. */
function columnType(field: Field | undefined, column: string): FieldType {
  return field?.type ?? (column === 'id' ? 'uuid' : 'timestamp');
}

function invalid(field: string, message: string): TenantryError {
  return new TenantryError('validation_failed', `${field} ${message}`, { field });
}

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$/;

/**
 * Parses one query-string value into the type of `column` (a field, or a system column), or
 * refuses it naming `label`, the parameter as the client wrote it.
 */
function parseValue(field: Field | undefined, column: string, raw: string, label = column): unknown {
  const type = columnType(field, column);
  const invalidValue = (message: string) => invalid(label, message);
  switch (type) {
    case 'integer':
      if (!/^-?\d{1,16}$/.test(raw)) throw invalidValue('must be an integer');
      return Number(raw);
    case 'number': {
      const value = Number(raw);
      if (raw.trim() === '' || !Number.isFinite(value)) throw invalidValue('must be a number');
      return value;
    }
    case 'boolean':
      if (raw !== 'true' && raw !== 'false') throw invalidValue('must be true or false');
      return raw === 'true';
    case 'date':
      if (!isCalendarDate(raw)) throw invalidValue('must be a date, YYYY-MM-DD');
      return raw;
    case 'timestamp':
      // Passed on as written: PostgreSQL keeps microseconds, a JavaScript Date only milliseconds.
      if (!ISO_TIMESTAMP.test(raw) || Number.isNaN(Date.parse(raw)) || !isCalendarDate(raw.slice(0, 10)))
        throw invalidValue('must be an ISO 8601 date-time');
      if (!/(Z|[+-](0\d|1[0-5]):[0-5]\d)$/.test(raw))
        throw invalidValue('has a time zone offset out of range');
      return raw;
    case 'uuid':
    case 'ref':
      if (!UUID.test(raw)) throw invalidValue('must be a UUID');
      return raw.toLowerCase();
    case 'enum':
      if (!field?.values?.includes(raw)) throw invalidValue(`must be one of ${field?.values?.join(', ')}`);
      return raw;
    case 'json':
      throw invalidValue('cannot be filtered');
    default:
      if (raw.length > 10_000) throw invalidValue('is too long');
      if (raw.includes('\u0000')) throw invalidValue('must not contain a NUL character');
      return raw;
  }
}

function likePattern(raw: string): string {
  // `*` is the wildcard; SQL's own wildcards match literally.
  return raw.replaceAll('\\', '\\\\').replaceAll('%', '\\%').replaceAll('_', '\\_').replaceAll('*', '%');
}

function columnOf(
  entity: Entity,
  name: string,
  parameter: string,
): { column: string; field: Field | undefined } {
  const field = fieldByName(entity, name);
  if (field) return { column: name, field };
  if (SORTABLE_SYSTEM.includes(name)) return { column: name, field: undefined };
  throw invalid(parameter, `names no field of ${entity.name}`);
}

function parseSort(entity: Entity, raw: string | undefined): SortKey[] {
  const keys: SortKey[] = [];
  for (const part of (raw ?? '').split(',').filter((p) => p.length > 0)) {
    const descending = part.startsWith('-');
    const name = descending ? part.slice(1) : part;
    const { column, field } = columnOf(entity, name, 'sort');
    if (field?.type === 'json') throw invalid('sort', `cannot sort by ${name}`);
    if (column === 'id') continue;
    if (keys.some((key) => key.column === column)) throw invalid('sort', `names ${name} twice`);
    keys.push({ column, descending, field });
  }
  if (keys.length > 4) throw invalid('sort', 'takes at most 4 fields');
  return keys;
}

interface Cursor {
  readonly values: unknown[];
  readonly id: string;
}

/** Timestamps go into cursors as text with microseconds: a Date would lose them and repeat rows. */
function cursorColumn(key: SortKey, index: number): string | undefined {
  const type = columnType(key.field, key.column);
  if (type !== 'timestamp') return undefined;
  return `to_char(${quoteIdent(key.column)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ${quoteIdent(`__cursor_${index}`)}`;
}

function encodeCursor(sort: readonly SortKey[], row: Row): string {
  const values = sort.map((key, index) => {
    const value = cursorColumn(key, index) ? row[`__cursor_${index}`] : row[key.column];
    return value instanceof Date ? value.toISOString() : (value ?? null);
  });
  return Buffer.from(JSON.stringify({ v: values, id: row.id })).toString('base64url');
}

function decodeCursor(raw: string, sort: readonly SortKey[]): Cursor {
  try {
    const decoded = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as {
      v?: unknown;
      id?: unknown;
    };
    if (
      !Array.isArray(decoded.v) ||
      decoded.v.length !== sort.length ||
      typeof decoded.id !== 'string' ||
      !UUID.test(decoded.id)
    ) {
      throw new Error('shape');
    }
    const values = decoded.v.map((value, index) =>
      value === null ? null : parseValue(sort[index]!.field, sort[index]!.column, String(value)),
    );
    return { values, id: decoded.id };
  } catch {
    throw invalid('next', 'is not a cursor returned by this list (with the same sort)');
  }
}

/**
 * The keyset condition "after the cursor row" for the sort keys, NULLs ordered as PostgreSQL
 * does (last ascending, first descending), with the id as the final tie-breaker.
 */
function afterCursor(sort: readonly SortKey[], cursor: Cursor, params: Params): string {
  const disjuncts: string[] = [];
  const equalities: string[] = [];
  sort.forEach((key, index) => {
    const column = quoteIdent(key.column);
    const value = cursor.values[index];
    const cast = FIELD_TYPES[columnType(key.field, key.column)];
    let greater: string;
    let equal: string;
    if (value === null) {
      greater = key.descending ? `${column} IS NOT NULL` : 'false';
      equal = `${column} IS NULL`;
    } else {
      const placeholder = params.add(value, cast);
      greater = key.descending
        ? `${column} < ${placeholder}`
        : `(${column} > ${placeholder} OR ${column} IS NULL)`;
      equal = `${column} = ${placeholder}`;
    }
    disjuncts.push([...equalities, greater].join(' AND '));
    equalities.push(equal);
  });
  disjuncts.push([...equalities, `id > ${params.add(cursor.id, 'uuid')}`].join(' AND '));
  return `(${disjuncts.map((d) => `(${d})`).join(' OR ')})`;
}

function filterCondition(entity: Entity, key: string, raw: string, params: Params): string {
  const match = /^([a-z][a-z0-9_]*)(?:\[([a-z]+)\])?$/.exec(key);
  if (!match) throw invalid(key, 'is not a known parameter');
  const operator = (match[2] ?? 'eq') as Operator;
  if (!OPERATORS.includes(operator)) throw invalid(key, `uses an unknown operator (${OPERATORS.join(', ')})`);
  const { column, field } = columnOf(entity, match[1]!, key);
  const cast = FIELD_TYPES[columnType(field, column)];
  const quoted = quoteIdent(column);
  switch (operator) {
    case 'eq':
      return `${quoted} = ${params.add(parseValue(field, column, raw, key), cast)}`;
    case 'gte':
      return `${quoted} >= ${params.add(parseValue(field, column, raw, key), cast)}`;
    case 'lte':
      return `${quoted} <= ${params.add(parseValue(field, column, raw, key), cast)}`;
    case 'in': {
      const values = raw.split(',').map((part) => parseValue(field, column, part, key));
      if (values.length > 100) throw invalid(key, 'takes at most 100 values');
      return `${quoted} = ANY(${params.add(values, `${cast}[]`)})`;
    }
    case 'like':
      if (field?.type !== 'text') throw invalid(key, 'applies to text fields only');
      return `${quoted} ILIKE ${params.add(likePattern(parseValue(field, column, raw, key) as string), 'text')}`;
  }
}

/** A row as the API shows it: no tenant_id, no search column; timestamps as ISO strings. */
export function presentRow(entity: Entity, row: Row): Record<string, unknown> {
  const result: Record<string, unknown> = { id: row.id };
  for (const field of entity.fields) {
    const value = row[field.name];
    result[field.name] = value === undefined ? null : value instanceof Date ? value.toISOString() : value;
  }
  result.created_at = row.created_at instanceof Date ? row.created_at.toISOString() : row.created_at;
  result.updated_at = row.updated_at instanceof Date ? row.updated_at.toISOString() : row.updated_at;
  return result;
}

function selectList(entity: Entity): string {
  return ['id', ...entity.fields.map((field) => field.name), 'created_at', 'updated_at']
    .map(quoteIdent)
    .join(', ');
}

function writeValue(field: Field, value: unknown): unknown {
  if (value === null || value === undefined) return null;
  // jsonb parameters travel as JSON text, or pg would turn arrays into PostgreSQL arrays.
  if (field.type === 'json') {
    // A request body was checked while parsed; values from the library or a job are checked here.
    assertJsonValue(value, field.name);
    return JSON.stringify(value);
  }
  if (field.type === 'uuid' || field.type === 'ref') return String(value).toLowerCase();
  return value;
}

/** Turns a database refusal into the answer a caller may see: the field, never the SQL or a value. */
export function translateWriteError(entity: Entity, error: unknown): unknown {
  const state = sqlStateOf(error);
  const constraint = constraintOf(error) ?? '';
  const fieldOfConstraint = entity.fields.find(
    (field) =>
      constraint === uniqueConstraintName(entity, field) ||
      constraint.startsWith(`${entity.name}_${field.name}_`),
  );
  const name = fieldOfConstraint?.name;
  if (state === SqlState.UNIQUE_VIOLATION) {
    return new TenantryError(
      'conflict',
      `${name ?? 'a unique field'} must be unique`,
      name ? { field: name } : {},
    );
  }
  if (state === SqlState.FOREIGN_KEY_VIOLATION) {
    if (constraint.startsWith(`${entity.name}_`) && name) {
      return new TenantryError(
        'validation_failed',
        `${name} does not name an existing ${fieldOfConstraint?.ref?.entity}`,
        {
          field: name,
        },
      );
    }
    return new TenantryError('conflict', `this ${entity.name} is still referenced by other rows`);
  }
  if (state === SqlState.CHECK_VIOLATION || state === SqlState.NOT_NULL_VIOLATION) {
    return new TenantryError(
      'validation_failed',
      `${name ?? 'a field'} is not valid`,
      name ? { field: name } : {},
    );
  }
  // Values PostgreSQL refuses and statement timeouts are answered where every error is
  // (src/http/problem.ts), whichever statement raised them.
  return error;
}

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
  db: TenantDb,
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

async function enforceRowQuota(
  tx: Queryable,
  db: TenantDb,
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

/**
 * Reads and writes one entity for one tenant, through its tenant-bound handle. Every statement
 * also filters on tenant_id (defence in depth, and the index is used); the database's policies
 * would refuse anything else anyway.
 */
export class EntityRepository {
  readonly #entity: Entity;
  readonly #createSchema;
  readonly #patchSchema;
  readonly #selectList: string;
  /** Quoted table name by schema, and the by-id SELECT by table: built once, not per request. */
  readonly #tables = new Map<string, string>();
  readonly #selectById = new Map<string, string>();

  constructor(entity: Entity) {
    this.#entity = entity;
    this.#createSchema = createInputSchema(entity);
    this.#patchSchema = patchInputSchema(entity);
    this.#selectList = selectList(entity);
  }

  #table(db: TenantDb): string {
    const schema = this.#entity.scope === 'shared' ? SHARED_SCHEMA : db.placement.schema;
    let table = this.#tables.get(schema);
    if (table === undefined) {
      table = qualified(schema, this.#entity.name);
      this.#tables.set(schema, table);
    }
    return table;
  }

  get entity(): Entity {
    return this.#entity;
  }

  async list(db: TenantDb, query: ListQuery): Promise<Page> {
    const entity = this.#entity;
    const params = new Params();
    const tenantScoped = entity.scope === 'tenant';
    const conditions: string[] = tenantScoped ? [`tenant_id = ${params.add(db.tenantId, 'uuid')}`] : [];
    let limit = DEFAULT_PAGE;
    const sort = parseSort(entity, query.sort);
    for (const [key, raw] of Object.entries(query)) {
      if (raw === undefined || key === 'sort') continue;
      if (key === 'limit') {
        if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_PAGE) {
          throw invalid('limit', `must be an integer from 1 to ${MAX_PAGE}`);
        }
        limit = Number(raw);
      } else if (key === 'q') {
        if (!entity.fields.some((field) => field.search))
          throw invalid('q', `${entity.name} has no search fields`);
        if (raw.length > 500) throw invalid('q', 'is too long');
        if (raw.includes('\u0000')) throw invalid('q', 'must not contain a NUL character');
        conditions.push(
          `${quoteIdent(SEARCH_COLUMN)} @@ websearch_to_tsquery('simple', ${params.add(raw, 'text')})`,
        );
      } else if (key !== 'next') {
        conditions.push(filterCondition(entity, key, raw, params));
      }
    }
    if (query.next !== undefined) conditions.push(afterCursor(sort, decodeCursor(query.next, sort), params));
    const order = [
      ...sort.map(
        (key) => `${quoteIdent(key.column)} ${key.descending ? 'DESC NULLS FIRST' : 'ASC NULLS LAST'}`,
      ),
      'id ASC',
    ].join(', ');
    const cursorColumns = sort.flatMap((key, index) => cursorColumn(key, index) ?? []);
    const sql = `SELECT ${[this.#selectList, ...cursorColumns].join(', ')} FROM ${this.#table(db)}
      ${conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''}
      ORDER BY ${order} LIMIT ${limit + 1}`;
    const { rows } = tenantScoped
      ? await db.query(sql, params.values)
      : await db.queryShared(sql, params.values);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      items: page.map((row) => presentRow(entity, row)),
      next: rows.length > limit && last ? encodeCursor(sort, last) : null,
    };
  }

  async get(db: TenantDb, id: string): Promise<Record<string, unknown>> {
    // Another tenant's id and an id that does not exist get the same answer.
    if (!UUID.test(id)) throw this.#notFound();
    const tenantScoped = this.#entity.scope === 'tenant';
    const table = this.#table(db);
    // The statement's text does not depend on the values: built once per table, and the values
    // listed in #rowCondition's order (the id, then the tenant).
    let sql = this.#selectById.get(table);
    if (sql === undefined) {
      sql = `SELECT ${this.#selectList} FROM ${table} WHERE ${this.#rowCondition(db, id, new Params())}`;
      this.#selectById.set(table, sql);
    }
    const { rows } = tenantScoped
      ? await db.query(sql, [id.toLowerCase(), db.tenantId])
      : await db.queryShared(sql, [id.toLowerCase()]);
    if (!rows[0]) throw this.#notFound();
    return presentRow(this.#entity, rows[0]);
  }

  async create(db: TenantDb, body: unknown, quota?: RowQuota): Promise<Record<string, unknown>> {
    const [row] = await this.#insert(db, [body], quota);
    return row!;
  }

  async createMany(db: TenantDb, bodies: unknown, quota?: RowQuota): Promise<Record<string, unknown>[]> {
    if (!Array.isArray(bodies) || bodies.length === 0 || bodies.length > MAX_BATCH) {
      throw invalid('rows', `must be an array of 1 to ${MAX_BATCH} rows`);
    }
    return this.#insert(db, bodies, quota);
  }

  async update(db: TenantDb, id: string, body: unknown): Promise<Record<string, unknown>> {
    this.#refuseSystemFields(body);
    const data = validate(this.#patchSchema, body) as Record<string, unknown>;
    if (!UUID.test(id)) throw this.#notFound();
    const params = new Params();
    const assignments = Object.entries(data).map(([name, value]) => {
      const field = fieldByName(this.#entity, name)!;
      return `${quoteIdent(name)} = ${params.add(writeValue(field, value), FIELD_TYPES[field.type])}`;
    });
    const sql = `UPDATE ${this.#table(db)} SET ${assignments.join(', ')}, updated_at = now()
      WHERE ${this.#rowCondition(db, id, params)} RETURNING ${this.#selectList}`;
    const { rows } = await db.query(sql, params.values).catch((error: unknown) => {
      throw translateWriteError(this.#entity, error);
    });
    if (!rows[0]) throw this.#notFound();
    return presentRow(this.#entity, rows[0]);
  }

  async delete(db: TenantDb, id: string): Promise<void> {
    if (!UUID.test(id)) throw this.#notFound();
    const params = new Params();
    const { rowCount } = await db
      .query(`DELETE FROM ${this.#table(db)} WHERE ${this.#rowCondition(db, id, params)}`, params.values)
      .catch((error: unknown) => {
        throw translateWriteError(this.#entity, error);
      });
    if (rowCount === 0) throw this.#notFound();
  }

  /** One INSERT for all rows: one statement, one transaction, one round trip. */
  async #insert(
    db: TenantDb,
    bodies: readonly unknown[],
    quota?: RowQuota,
  ): Promise<Record<string, unknown>[]> {
    const rows = bodies.map((body, index) => {
      try {
        this.#refuseSystemFields(body);
        return validate(this.#createSchema, body) as Record<string, unknown>;
      } catch (error) {
        if (bodies.length > 1 && error instanceof TenantryError) {
          throw new TenantryError(error.code, `rows/${index}: ${error.message}`, {
            field: `rows/${index}/${error.field ?? ''}`,
          });
        }
        throw error;
      }
    });
    const fields = this.#entity.fields;
    // PostgreSQL takes at most 65,535 parameters in one statement.
    if (rows.length * (fields.length + 2) > 65_535) {
      throw invalid(
        'rows',
        `holds too many values for one statement; send at most ${Math.floor(65_535 / (fields.length + 2))} rows`,
      );
    }
    const params = new Params();
    const tenantScoped = this.#entity.scope === 'tenant';
    const tuples = rows.map((data) => {
      const values = tenantScoped ? [params.add(db.tenantId, 'uuid')] : [];
      values.push(params.add(uuidv7(), 'uuid'));
      for (const field of fields) {
        values.push(
          Object.hasOwn(data, field.name)
            ? params.add(writeValue(field, data[field.name]), FIELD_TYPES[field.type])
            : 'DEFAULT',
        );
      }
      return `(${values.join(', ')})`;
    });
    const columns = [...(tenantScoped ? ['tenant_id'] : []), 'id', ...fields.map((field) => field.name)]
      .map(quoteIdent)
      .join(', ');
    const sql = `INSERT INTO ${this.#table(db)} (${columns}) VALUES ${tuples.join(', ')} RETURNING ${this.#selectList}`;
    try {
      // Without row limits, the insert is one statement (one round trip). With them, the tenant's
      // writers take turns (a transaction-level advisory lock), count, and insert in one transaction.
      const result =
        quota && (quota.perEntity !== undefined || quota.total !== undefined)
          ? await db.transaction(async (tx) => {
              await enforceRowQuota(tx, db, this.#entity.name, rows.length, quota);
              return tx.query(sql, params.values);
            })
          : await db.query(sql, params.values);
      return result.rows.map((row) => presentRow(this.#entity, row));
    } catch (error) {
      throw translateWriteError(this.#entity, error);
    }
  }

  /** The row `id` of this tenant (for shared entities: of the shared table). */
  #rowCondition(db: TenantDb, id: string, params: Params): string {
    const row = `id = ${params.add(id.toLowerCase(), 'uuid')}`;
    return this.#entity.scope === 'tenant'
      ? `tenant_id = ${params.add(db.tenantId, 'uuid')} AND ${row}`
      : row;
  }

  #refuseSystemFields(body: unknown): void {
    if (typeof body !== 'object' || body === null) return;
    for (const name of ['tenant_id', 'id', 'created_at', 'updated_at']) {
      if (Object.hasOwn(body, name)) throw invalid(name, 'is set by the server');
    }
  }

  #notFound(): TenantryError {
    return new TenantryError('not_found', `no such ${this.#entity.name}`);
  }
}
