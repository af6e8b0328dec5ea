import { isCalendarDate } from '../calendar.js';
import { TenantryError } from '../errors.js';
import { type Entity, type Field, type FieldType, fieldByName } from './entity.js';

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SORTABLE_SYSTEM = ['id', 'created_at', 'updated_at'];
const DATE_TIME = /^(\d{4}-\d{2}-\d{2})[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(.*)$/;
const EXAMPLE_TIMESTAMP = '2026-01-01T00:00:00Z';

export function invalid(field: string, message: string): TenantryError {
  return new TenantryError('validation_failed', `${field} ${message}`, { field });
}

/** The type of a filterable column: a declared field's, or `id` (uuid) and the timestamps. */
export function columnType(field: Field | undefined, column: string): FieldType {
  return field?.type ?? (column === 'id' ? 'uuid' : 'timestamp');
}

/** The column a query parameter names: a field of the entity, or a sortable system column. */
export function columnOf(
  entity: Entity,
  name: string,
  parameter: string,
): { column: string; field: Field | undefined } {
  const field = fieldByName(entity, name);
  if (field) return { column: name, field };
  if (SORTABLE_SYSTEM.includes(name)) return { column: name, field: undefined };
  throw invalid(parameter, `names no field of ${entity.name}`);
}

/**
 * A date-time with its offset, passed on as written (PostgreSQL keeps microseconds, a JavaScript
 * Date only milliseconds). Without an offset PostgreSQL would read it in the session's time zone,
 * so the same filter would mean another instant on another server: refused, saying what to add.
 */
function parseTimestamp(raw: string, refuse: (message: string) => Error): string {
  if (/^\d{4}-\d{2}-\d{2}$/.test(raw) && isCalendarDate(raw)) {
    throw refuse(`must be a date-time with a time zone offset, e.g. ${raw}T00:00:00Z, not a date alone`);
  }
  const match = DATE_TIME.exec(raw);
  if (!match || !isCalendarDate(match[1]!)) {
    throw refuse(`must be an ISO 8601 date-time with a time zone offset, e.g. ${EXAMPLE_TIMESTAMP}`);
  }
  const offset = match[2]!;
  if (offset === '') {
    throw refuse(`needs a time zone offset (Z or ±hh:mm), e.g. ${raw}Z`);
  }
  if (!/^(Z|[+-]\d{2}:\d{2})$/.test(offset)) {
    throw refuse(`must end in a time zone offset written Z or ±hh:mm, e.g. ${EXAMPLE_TIMESTAMP}`);
  }
  if (!/^(Z|[+-](0\d|1[0-5]):[0-5]\d)$/.test(offset)) {
    throw refuse('has a time zone offset out of range (at most ±15:59)');
  }
  if (Number.isNaN(Date.parse(raw))) {
    throw refuse(`must be an ISO 8601 date-time with a time zone offset, e.g. ${EXAMPLE_TIMESTAMP}`);
  }
  return raw;
}

/**
 * Parses one query-string value into the type of `column` (a field, or a system column), or
 * refuses it naming `label`, the parameter as the client wrote it.
 */
export function parseValue(field: Field | undefined, column: string, raw: string, label = column): unknown {
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
      return parseTimestamp(raw, invalidValue);
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
