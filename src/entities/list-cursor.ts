import type { Row } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { FIELD_TYPES } from './entity.js';
import type { SortKey } from './list-sort.js';
import { columnType, invalid, parseValue, UUID } from './query-value.js';
import type { SqlParams } from './sql-params.js';

interface Cursor {
  readonly values: unknown[];
  readonly id: string;
}

/** Timestamps go into cursors as text with microseconds: a Date would lose them and repeat rows. */
export function cursorColumn(key: SortKey, index: number): string | undefined {
  const type = columnType(key.field, key.column);
  if (type !== 'timestamp') return undefined;
  return `to_char(${quoteIdent(key.column)} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ${quoteIdent(`__cursor_${index}`)}`;
}

export function encodeCursor(sort: readonly SortKey[], row: Row): string {
  const values = sort.map((key, index) => {
    const value = cursorColumn(key, index) ? row[`__cursor_${index}`] : row[key.column];
    return value instanceof Date ? value.toISOString() : (value ?? null);
  });
  return Buffer.from(JSON.stringify({ v: values, id: row.id })).toString('base64url');
}

export function decodeCursor(raw: string, sort: readonly SortKey[]): Cursor {
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
export function afterCursor(sort: readonly SortKey[], cursor: Cursor, params: SqlParams): string {
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
