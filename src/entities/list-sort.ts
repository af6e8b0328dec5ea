import { quoteIdent } from '../db/identifiers.js';
import type { Entity, Field } from './entity.js';
import { columnOf, invalid } from './query-value.js';

export interface SortKey {
  readonly column: string;
  readonly descending: boolean;
  readonly field: Field | undefined;
}

/** The `sort` parameter: up to 4 columns, `-` for descending; the id is always the last key. */
export function parseSort(entity: Entity, raw: string | undefined): SortKey[] {
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

export function orderBy(sort: readonly SortKey[]): string {
  return [
    ...sort.map(
      (key) => `${quoteIdent(key.column)} ${key.descending ? 'DESC NULLS FIRST' : 'ASC NULLS LAST'}`,
    ),
    'id ASC',
  ].join(', ');
}
