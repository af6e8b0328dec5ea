import { quoteIdent } from '../db/identifiers.js';
import { type Entity, FIELD_TYPES } from './entity.js';
import { columnOf, columnType, invalid, parseValue } from './query-value.js';
import type { SqlParams } from './sql-params.js';

const OPERATORS = ['eq', 'gte', 'lte', 'in', 'like'] as const;
type Operator = (typeof OPERATORS)[number];

function likePattern(raw: string): string {
  // `*` is the wildcard; SQL's own wildcards match literally.
  return raw.replaceAll('\\', '\\\\').replaceAll('%', '\\%').replaceAll('_', '\\_').replaceAll('*', '%');
}

/** The condition of one filter parameter, `field` or `field[operator]`, its value as a parameter. */
export function filterCondition(entity: Entity, key: string, raw: string, params: SqlParams): string {
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
