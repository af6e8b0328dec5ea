import type { Row } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { assertJsonValue } from '../validation.js';
import type { Entity, Field } from './entity.js';

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

/** The columns `presentRow` reads, quoted. */
export function selectList(entity: Entity): string {
  return ['id', ...entity.fields.map((field) => field.name), 'created_at', 'updated_at']
    .map(quoteIdent)
    .join(', ');
}

/** A field's value as a statement parameter. */
export function writeValue(field: Field, value: unknown): unknown {
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
