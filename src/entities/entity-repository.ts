import { v7 as uuidv7 } from 'uuid';
import { qualified, quoteIdent } from '../db/identifiers.js';
import { TenantryError } from '../errors.js';
import { validate } from '../validation.js';
import { type Entity, FIELD_TYPES, type Field, fieldByName, isIndexedText } from './entity.js';
import { type EntityDb, SHARED_SCHEMA } from './entity-db.js';
import { assertIndexedTextFits, createInputSchema, patchInputSchema } from './entity-input.js';
import { presentRow, selectList, writeValue } from './entity-row.js';
import { type ListQuery, listStatement, type Page, pageOf } from './list-query.js';
import { invalid, UUID } from './query-value.js';
import { enforceRowQuota, type RowQuota } from './row-quota.js';
import { SqlParams } from './sql-params.js';
import { translateWriteError } from './write-error.js';

export type { ListQuery, Page } from './list-query.js';
export type { RowQuota } from './row-quota.js';

export const MAX_BATCH = 1000;

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
  readonly #indexedText: readonly Field[];
  /** Quoted table name by schema, and the by-id SELECT by table: built once, not per request. */
  readonly #tables = new Map<string, string>();
  readonly #selectById = new Map<string, string>();

  constructor(entity: Entity) {
    this.#entity = entity;
    this.#createSchema = createInputSchema(entity);
    this.#patchSchema = patchInputSchema(entity);
    this.#selectList = selectList(entity);
    this.#indexedText = entity.fields.filter(isIndexedText);
  }

  #table(db: EntityDb): string {
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

  async list(db: EntityDb, query: ListQuery): Promise<Page> {
    const source = { table: this.#table(db), selectList: this.#selectList, tenantId: db.tenantId };
    const statement = listStatement(this.#entity, source, query);
    const { rows } =
      this.#entity.scope === 'tenant'
        ? await db.query(statement.sql, statement.values)
        : await db.queryShared(statement.sql, statement.values);
    return pageOf(this.#entity, rows, statement);
  }

  async get(db: EntityDb, id: string): Promise<Record<string, unknown>> {
    // Another tenant's id and an id that does not exist get the same answer.
    if (!UUID.test(id)) throw this.#notFound();
    const tenantScoped = this.#entity.scope === 'tenant';
    const table = this.#table(db);
    // The statement's text does not depend on the values: built once per table, and the values
    // listed in #rowCondition's order (the id, then the tenant).
    let sql = this.#selectById.get(table);
    if (sql === undefined) {
      sql = `SELECT ${this.#selectList} FROM ${table} WHERE ${this.#rowCondition(db, id, new SqlParams())}`;
      this.#selectById.set(table, sql);
    }
    const { rows } = tenantScoped
      ? await db.query(sql, [id.toLowerCase(), db.tenantId])
      : await db.queryShared(sql, [id.toLowerCase()]);
    if (!rows[0]) throw this.#notFound();
    return presentRow(this.#entity, rows[0]);
  }

  async create(db: EntityDb, body: unknown, quota?: RowQuota): Promise<Record<string, unknown>> {
    const [row] = await this.#insert(db, [body], quota);
    return row!;
  }

  async createMany(db: EntityDb, bodies: unknown, quota?: RowQuota): Promise<Record<string, unknown>[]> {
    if (!Array.isArray(bodies) || bodies.length === 0 || bodies.length > MAX_BATCH) {
      throw invalid('rows', `must be an array of 1 to ${MAX_BATCH} rows`);
    }
    return this.#insert(db, bodies, quota);
  }

  async update(db: EntityDb, id: string, body: unknown): Promise<Record<string, unknown>> {
    this.#refuseSystemFields(body);
    const data = validate(this.#patchSchema, body) as Record<string, unknown>;
    assertIndexedTextFits(this.#indexedText, data);
    if (!UUID.test(id)) throw this.#notFound();
    const params = new SqlParams();
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

  async delete(db: EntityDb, id: string): Promise<void> {
    if (!UUID.test(id)) throw this.#notFound();
    const params = new SqlParams();
    const { rowCount } = await db
      .query(`DELETE FROM ${this.#table(db)} WHERE ${this.#rowCondition(db, id, params)}`, params.values)
      .catch((error: unknown) => {
        throw translateWriteError(this.#entity, error);
      });
    if (rowCount === 0) throw this.#notFound();
  }

  /** One INSERT for all rows: one statement, one transaction, one round trip. */
  async #insert(
    db: EntityDb,
    bodies: readonly unknown[],
    quota?: RowQuota,
  ): Promise<Record<string, unknown>[]> {
    const rows = this.#validateRows(bodies);
    const { sql, values } = this.#insertStatement(db, rows);
    try {
      // Without row limits, the insert is one statement (one round trip). With them, the tenant's
      // writers take turns (a transaction-level advisory lock), count, and insert in one transaction.
      const result =
        quota && (quota.perEntity !== undefined || quota.total !== undefined)
          ? await db.transaction(async (tx) => {
              await enforceRowQuota(tx, db, this.#entity.name, rows.length, quota);
              return tx.query(sql, values);
            })
          : await db.query(sql, values);
      return result.rows.map((row) => presentRow(this.#entity, row));
    } catch (error) {
      throw translateWriteError(this.#entity, error);
    }
  }

  /** The bodies as rows to insert; in a batch, a refusal names the row (`rows/3/title`). */
  #validateRows(bodies: readonly unknown[]): Record<string, unknown>[] {
    return bodies.map((body, index) => {
      try {
        this.#refuseSystemFields(body);
        const data = validate(this.#createSchema, body) as Record<string, unknown>;
        assertIndexedTextFits(this.#indexedText, data);
        return data;
      } catch (error) {
        if (bodies.length > 1 && error instanceof TenantryError) {
          throw new TenantryError(error.code, `rows/${index}: ${error.message}`, {
            field: `rows/${index}/${error.field ?? ''}`,
          });
        }
        throw error;
      }
    });
  }

  #insertStatement(
    db: EntityDb,
    rows: readonly Record<string, unknown>[],
  ): { sql: string; values: unknown[] } {
    const fields = this.#entity.fields;
    // PostgreSQL takes at most 65,535 parameters in one statement.
    if (rows.length * (fields.length + 2) > 65_535) {
      throw invalid(
        'rows',
        `holds too many values for one statement; send at most ${Math.floor(65_535 / (fields.length + 2))} rows`,
      );
    }
    const params = new SqlParams();
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
    return { sql, values: params.values };
  }

  /** The row `id` of this tenant (for shared entities: of the shared table). */
  #rowCondition(db: EntityDb, id: string, params: SqlParams): string {
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
