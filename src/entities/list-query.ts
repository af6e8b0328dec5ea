import type { Row } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import type { Entity } from './entity.js';
import { SEARCH_COLUMN } from './entity-ddl.js';
import { presentRow } from './entity-row.js';
import { afterCursor, cursorColumn, decodeCursor, encodeCursor } from './list-cursor.js';
import { filterCondition } from './list-filter.js';
import { orderBy, parseSort, type SortKey } from './list-sort.js';
import { invalid } from './query-value.js';
import { SqlParams } from './sql-params.js';

export const MAX_PAGE = 1000;
export const DEFAULT_PAGE = 50;

export interface ListQuery {
  readonly [parameter: string]: string | undefined;
}

export interface Page {
  readonly items: Record<string, unknown>[];
  readonly next: string | null;
}

/** The SELECT of one page, and one row more, which tells whether a next page exists. */
export interface ListStatement {
  readonly sql: string;
  readonly values: unknown[];
  readonly limit: number;
  readonly sort: readonly SortKey[];
}

/** Where a list reads from: the entity's table, the columns it shows, the tenant it is for. */
export interface ListSource {
  readonly table: string;
  readonly selectList: string;
  readonly tenantId: string;
}

export function listStatement(entity: Entity, source: ListSource, query: ListQuery): ListStatement {
  const params = new SqlParams();
  const conditions: string[] =
    entity.scope === 'tenant' ? [`tenant_id = ${params.add(source.tenantId, 'uuid')}`] : [];
  let limit = DEFAULT_PAGE;
  const sort = parseSort(entity, query.sort);
  for (const [key, raw] of Object.entries(query)) {
    if (raw === undefined || key === 'sort') continue;
    if (key === 'limit') limit = parseLimit(raw);
    else if (key === 'q') conditions.push(searchCondition(entity, raw, params));
    else if (key !== 'next') conditions.push(filterCondition(entity, key, raw, params));
  }
  if (query.next !== undefined) conditions.push(afterCursor(sort, decodeCursor(query.next, sort), params));
  const cursorColumns = sort.flatMap((key, index) => cursorColumn(key, index) ?? []);
  const sql = `SELECT ${[source.selectList, ...cursorColumns].join(', ')} FROM ${source.table}
      ${conditions.length > 0 ? `WHERE ${conditions.join(' AND ')}` : ''}
      ORDER BY ${orderBy(sort)} LIMIT ${limit + 1}`;
  return { sql, values: params.values, limit, sort };
}

/** The rows of a page as the API shows them, and the cursor of the next page if there is one. */
export function pageOf(entity: Entity, rows: readonly Row[], statement: ListStatement): Page {
  const { limit, sort } = statement;
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  return {
    items: page.map((row) => presentRow(entity, row)),
    next: rows.length > limit && last ? encodeCursor(sort, last) : null,
  };
}

function parseLimit(raw: string): number {
  if (!/^\d{1,4}$/.test(raw) || Number(raw) < 1 || Number(raw) > MAX_PAGE) {
    throw invalid('limit', `must be an integer from 1 to ${MAX_PAGE}`);
  }
  return Number(raw);
}

function searchCondition(entity: Entity, raw: string, params: SqlParams): string {
  if (!entity.fields.some((field) => field.search)) throw invalid('q', `${entity.name} has no search fields`);
  if (raw.length > 500) throw invalid('q', 'is too long');
  if (raw.includes('\u0000')) throw invalid('q', 'must not contain a NUL character');
  return `${quoteIdent(SEARCH_COLUMN)} @@ websearch_to_tsquery('simple', ${params.add(raw, 'text')})`;
}
