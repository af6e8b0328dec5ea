/** Field types an entity may declare, and what PostgreSQL type each becomes. */
export const FIELD_TYPES = {
  text: 'text',
  integer: 'bigint',
  number: 'double precision',
  boolean: 'boolean',
  date: 'date',
  timestamp: 'timestamptz',
  uuid: 'uuid',
  json: 'jsonb',
  enum: 'text',
  ref: 'uuid',
} as const;

export type FieldType = keyof typeof FIELD_TYPES;
export type EntityScope = 'tenant' | 'shared';
export type OnDelete = 'cascade' | 'restrict' | 'set-null';

/** A declared field, normalised: every option has its value. Immutable. */
export interface Field {
  readonly name: string;
  readonly type: FieldType;
  readonly required: boolean;
  /** Unique per tenant for tenant entities, globally for shared ones. */
  readonly unique: boolean;
  readonly index: boolean;
  /** Part of the entity's full-text search (`?q=`). */
  readonly search: boolean;
  readonly default: string | number | boolean | null | undefined;
  readonly maxLength: number | undefined;
  readonly min: number | undefined;
  readonly max: number | undefined;
  /** The allowed values of an enum. */
  readonly values: readonly string[] | undefined;
  /** The entity a ref points to, and what deleting the target does. */
  readonly ref: { readonly entity: string; readonly onDelete: OnDelete } | undefined;
}

/** A declared entity, normalised. Immutable. */
export interface Entity {
  readonly name: string;
  readonly scope: EntityScope;
  /** A feature the tenant must have to use the entity (plans issue); undefined for all tenants. */
  readonly feature: string | undefined;
  readonly fields: readonly Field[];
}

/** Columns every entity table has besides its declared fields. */
export const SYSTEM_COLUMNS = ['tenant_id', 'id', 'created_at', 'updated_at'] as const;

/**
 * The most UTF-8 bytes a value of a unique or indexed text field may have. A btree entry holds at
 * most 2704 bytes (an 8 kB page); tenant_id and the headers take 28 of them, and the rest is margin.
 * A longer value would make PostgreSQL refuse the write as an internal error, naming no field.
 */
export const INDEXED_TEXT_MAX_BYTES = 2000;

/** A text field whose values go into a btree index (its unique constraint or its index). */
export function isIndexedText(field: Field): boolean {
  return field.type === 'text' && (field.unique || field.index);
}

export function searchFields(entity: Entity): readonly Field[] {
  return entity.fields.filter((field) => field.search);
}

export function fieldByName(entity: Entity, name: string): Field | undefined {
  return entity.fields.find((field) => field.name === name);
}
