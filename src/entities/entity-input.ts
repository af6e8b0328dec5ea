import Type, { type TSchema } from 'typebox';
import { type Entity, type Field, INDEXED_TEXT_MAX_BYTES, isIndexedText } from './entity.js';
import { invalid } from './query-value.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const DATE = '^\\d{4}-\\d{2}-\\d{2}$';
const NO_NUL = '^[^\\u0000]*$';
const TIMESTAMP = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?(Z|[+-]\\d{2}:\\d{2})$';

function valueSchema(field: Field): TSchema {
  switch (field.type) {
    case 'text':
      // PostgreSQL text cannot hold NUL: refused here, naming the field, not by the database.
      if (!isIndexedText(field))
        return Type.String({ maxLength: field.maxLength ?? 1_000_000, pattern: NO_NUL });
      // A character has at least one byte: the character limit refuses a huge value before the
      // pattern reads it; assertIndexedTextFits then counts the bytes.
      return Type.String({
        maxLength: field.maxLength ?? INDEXED_TEXT_MAX_BYTES,
        pattern: NO_NUL,
        description: `at most ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8 (unique or indexed)`,
      });
    case 'integer':
      return Type.Integer({
        minimum: field.min ?? Number.MIN_SAFE_INTEGER,
        maximum: field.max ?? Number.MAX_SAFE_INTEGER,
      });
    case 'number':
      return Type.Number({
        ...(field.min === undefined ? {} : { minimum: field.min }),
        ...(field.max === undefined ? {} : { maximum: field.max }),
      });
    case 'boolean':
      return Type.Boolean();
    case 'date':
      return Type.String({ pattern: DATE });
    case 'timestamp':
      return Type.String({ pattern: TIMESTAMP });
    case 'uuid':
    case 'ref':
      return Type.String({ pattern: UUID });
    case 'json':
      return Type.Unknown();
    case 'enum':
      return Type.Union((field.values ?? []).map((value) => Type.Literal(value)));
  }
}

/**
 * Refuses a value of a unique or indexed text field that its btree index could not hold, naming
 * the field; JSON Schema counts characters, the index bytes.
 */
export function assertIndexedTextFits(
  fields: readonly Field[],
  data: Readonly<Record<string, unknown>>,
): void {
  for (const field of fields) {
    const value = data[field.name];
    if (typeof value === 'string' && Buffer.byteLength(value, 'utf8') > INDEXED_TEXT_MAX_BYTES) {
      throw invalid(
        field.name,
        `is longer than ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8, the most a unique or indexed text field holds`,
      );
    }
  }
}

function fieldSchema(field: Field): TSchema {
  // A required field may not be null; an optional one may be cleared with null.
  return field.required ? valueSchema(field) : Type.Union([valueSchema(field), Type.Null()]);
}

/** Body of a create: required fields without a default must be there; nothing undeclared. */
export function createInputSchema(entity: Entity): TSchema {
  const properties: Record<string, TSchema> = {};
  for (const field of entity.fields) {
    const needed = field.required && (field.default === undefined || field.default === null);
    properties[field.name] = needed ? fieldSchema(field) : Type.Optional(fieldSchema(field));
  }
  return Type.Object(properties, { additionalProperties: false });
}

/** Body of a PATCH: any declared field, at least one. */
export function patchInputSchema(entity: Entity): TSchema {
  const properties: Record<string, TSchema> = {};
  for (const field of entity.fields) properties[field.name] = Type.Optional(fieldSchema(field));
  return Type.Object(properties, { additionalProperties: false, minProperties: 1 });
}

/** A row as the API shows it: never tenant_id or internal columns. */
export function outputSchema(entity: Entity): TSchema {
  const properties: Record<string, TSchema> = { id: Type.String({ format: 'uuid' }) };
  for (const field of entity.fields) {
    const value = field.type === 'json' ? Type.Unknown() : Type.Union([valueSchema(field), Type.Null()]);
    // Absent (not null) while the tenant's tables are at an entity version without the field.
    properties[field.name] = Type.Optional(value);
  }
  properties.created_at = Type.String({ format: 'date-time' });
  properties.updated_at = Type.String({ format: 'date-time' });
  return Type.Object(properties, { additionalProperties: false });
}
