import Type, { type TSchema } from 'typebox';
import type { Entity, Field } from './entity.js';

const UUID = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
const DATE = '^\\d{4}-\\d{2}-\\d{2}$';
const NO_NUL = '^[^\\u0000]*$';
const TIMESTAMP = '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,6})?)?(Z|[+-]\\d{2}:\\d{2})$';

function valueSchema(field: Field): TSchema {
  switch (field.type) {
    case 'text':
      // PostgreSQL text cannot hold NUL: refused here, naming the field, not by the database.
      return Type.String({ maxLength: field.maxLength ?? 1_000_000, pattern: NO_NUL });
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
