import { quoteIdent, quoteLiteral } from '../../db/identifiers.js';
import type { FieldType } from '../../entities/entity.js';
import {
  BUILT_IN_RESOURCES,
  IDENTIFIER,
  RESERVED_FIELD_NAMES,
  SQL_RESERVED,
} from '../../entities/entity-config.js';
import type { SourceColumn, SourceSchema, SourceTable } from './source-schema.js';

/** A field as a config file declares it (`type`, `required`, `unique`, `to`, ...). */
export type FieldProposal = Readonly<Record<string, unknown>> & { readonly type: FieldType };

/** Entities as a config file declares them, the adopted tables' part. */
export type EntityProposals = Record<
  string,
  { readonly scope: 'tenant'; readonly fields: Record<string, FieldProposal> }
>;

/** Something of the source that is not adopted, and why. */
export interface Unmapped {
  readonly table: string;
  readonly column?: string;
  readonly reason: string;
}

/** How one target column is computed from a source row (`t` is the source table). */
export interface ColumnSource {
  readonly column: string;
  readonly sql: string;
}

export interface TablePlan {
  readonly table: string;
  readonly entity: string;
  /** Source expressions for the entity's archived columns, in their order (id, fields, timestamps). */
  readonly columns: readonly ColumnSource[];
  readonly rows: number;
}

export interface AdoptPlan {
  readonly schema: string;
  /** The proposed declarations, as a config file writes them. */
  readonly entities: EntityProposals;
  readonly tables: readonly TablePlan[];
  readonly unmapped: readonly Unmapped[];
  /** Names changed to fit Tenantry's rules, and keys kept as `legacy_id`. */
  readonly notes: readonly string[];
}

/** A name Tenantry accepts, made from a source name; the same source name gives the same name. */
function identifier(raw: string, taken: ReadonlySet<string>, suffix: string): string {
  let name = raw
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_')
    .replace(/^[^a-z]+/, '')
    .slice(0, 40);
  if (name === '') name = 'x';
  if (taken.has(name) || SQL_RESERVED.has(name) || name.startsWith('pg_') || name.startsWith('tenantry')) {
    name = `${name}_${suffix}`;
  }
  return IDENTIFIER.test(name) ? name : `x_${name}`.slice(0, 48);
}

const INTEGER_TYPES = new Set(['int2', 'int4', 'int8']);
const NUMBER_TYPES = new Set(['float4', 'float8', 'numeric']);
const TEXT_TYPES = new Set(['text', 'varchar', 'bpchar', 'citext', 'name']);
const TIMESTAMP_TYPES = new Set(['timestamp', 'timestamptz']);

/** The field type a column becomes, and the SQL that converts its value; undefined: not adoptable. */
function mapColumn(column: SourceColumn): { type: FieldType; sql: (ref: string) => string } | undefined {
  const name = column.typeName;
  if (column.isArray || name === 'json' || name === 'jsonb')
    return { type: 'json', sql: (ref) => `to_jsonb(${ref})` };
  if (column.isEnum) return { type: 'enum', sql: (ref) => `${ref}::text` };
  if (TEXT_TYPES.has(name)) return { type: 'text', sql: (ref) => `${ref}::text` };
  if (INTEGER_TYPES.has(name)) return { type: 'integer', sql: (ref) => `${ref}::bigint` };
  if (NUMBER_TYPES.has(name)) return { type: 'number', sql: (ref) => `${ref}::double precision` };
  if (name === 'bool') return { type: 'boolean', sql: (ref) => ref };
  if (name === 'date') return { type: 'date', sql: (ref) => ref };
  if (TIMESTAMP_TYPES.has(name)) return { type: 'timestamp', sql: (ref) => `${ref}::timestamptz` };
  if (name === 'uuid') return { type: 'uuid', sql: (ref) => ref };
  return undefined;
}

/** A source default Tenantry can declare: a plain literal of the field's type. */
function literalDefault(column: SourceColumn, type: FieldType): string | number | boolean | undefined {
  const sql = column.defaultSql;
  if (!sql) return undefined;
  if (type === 'boolean' && /^(true|false)$/.test(sql)) return sql === 'true';
  if ((type === 'integer' || type === 'number') && /^-?\d+(\.\d+)?$/.test(sql.replace(/^\((.*)\)$/, '$1'))) {
    return Number(sql.replace(/^\((.*)\)$/, '$1'));
  }
  const text = /^'((?:[^']|'')*)'::[a-z ]+$/.exec(sql);
  if (text && (type === 'text' || type === 'enum')) return text[1]!.replaceAll("''", "'");
  return undefined;
}

/** The new id of a row whose key is not a UUID: the same key always gives the same id. */
export function legacyIdSql(table: string, keySql: string): string {
  return `md5(${quoteLiteral(`${table}:`)} || (${keySql})::text)::uuid`;
}

/**
 * Proposes entity declarations for the source tables: each table with a one-column primary key
 * becomes an entity; its columns become fields of the nearest type, NOT NULL required, one-column
 * UNIQUE unique, one-column foreign keys to an adopted table references. A UUID key stays the
 * row's id; any other key is kept as a `legacy_id` field, and the row gets an id derived from it,
 * so references to it are mapped the same way. What cannot be mapped is listed with the reason.
 */
export function planAdoption(source: SourceSchema): AdoptPlan {
  const unmapped: Unmapped[] = [];
  const notes: string[] = [];
  const adoptable = source.tables.filter((table) => {
    if (table.primaryKey.length === 1) return true;
    unmapped.push({
      table: table.name,
      reason:
        table.primaryKey.length === 0
          ? 'it has no primary key: a row could not be told from another'
          : `its primary key has ${table.primaryKey.length} columns (a join table?): declare it by hand`,
    });
    return false;
  });
  const entityNames = new Map<string, string>();
  const used = new Set<string>(BUILT_IN_RESOURCES);
  for (const table of adoptable) {
    const name = identifier(table.name, used, 'data');
    if (name !== table.name) notes.push(`table ${table.name} becomes entity ${name}`);
    used.add(name);
    entityNames.set(table.name, name);
  }
  const keyOf = new Map(adoptable.map((table) => [table.name, keyColumn(table)]));
  const entities: EntityProposals = {};
  const tables: TablePlan[] = [];
  for (const table of adoptable) {
    const { entity, fields, columns } = planTable(table, {
      keyOf,
      entityNames,
      enums: source.enums,
      notes,
      unmapped,
    });
    entities[entity] = { scope: 'tenant', fields };
    tables.push({ table: table.name, entity, columns, rows: table.rows });
  }
  return { schema: source.schema, entities, tables, unmapped, notes };
}

interface PlanContext {
  readonly keyOf: ReadonlyMap<string, SourceColumn>;
  readonly entityNames: ReadonlyMap<string, string>;
  readonly enums: SourceSchema['enums'];
  readonly notes: string[];
  readonly unmapped: Unmapped[];
}

/** One table's entity: its fields, and the source expressions of its archived columns. */
function planTable(
  table: SourceTable,
  context: PlanContext,
): { entity: string; fields: Record<string, FieldProposal>; columns: ColumnSource[] } {
  const { keyOf, entityNames, notes, unmapped } = context;
  const entity = entityNames.get(table.name)!;
  const key = keyOf.get(table.name)!;
  const fields: Record<string, FieldProposal> = {};
  const columns: ColumnSource[] = [];
  const fieldNames = new Set<string>(RESERVED_FIELD_NAMES);
  const ref = (column: string) => `t.${quoteIdent(column)}`;
  columns.push({
    column: 'id',
    sql: key.typeName === 'uuid' ? ref(key.name) : legacyIdSql(table.name, ref(key.name)),
  });
  if (key.typeName !== 'uuid') {
    const mapped = mapColumn(key);
    const type = mapped?.type === 'integer' ? 'integer' : 'text';
    fields.legacy_id = { type, required: true, unique: true };
    fieldNames.add('legacy_id');
    columns.push({
      column: 'legacy_id',
      sql: type === 'integer' ? `${ref(key.name)}::bigint` : `${ref(key.name)}::text`,
    });
    notes.push(
      `${table.name}.${key.name} (${key.type}) is kept as ${entity}.legacy_id; rows get new UUID ids`,
    );
  }
  let createdAt: string | undefined;
  let updatedAt: string | undefined;
  for (const column of table.columns) {
    if (column.name === key.name) continue;
    const mapped = mapColumn(column);
    if ((column.name === 'created_at' || column.name === 'updated_at') && mapped?.type === 'timestamp') {
      if (column.name === 'created_at') createdAt = `coalesce(${ref(column.name)}::timestamptz, now())`;
      else updatedAt = `coalesce(${ref(column.name)}::timestamptz, now())`;
      continue;
    }
    const foreignKey = table.foreignKeys.find(
      (fk) => fk.columns.length === 1 && fk.columns[0] === column.name && keyOf.has(fk.refTable),
    );
    const name = identifier(column.name, fieldNames, 'value');
    if (name !== column.name) notes.push(`${table.name}.${column.name} becomes field ${entity}.${name}`);
    if (foreignKey) {
      const target = keyOf.get(foreignKey.refTable)!;
      if (foreignKey.refColumns[0] !== target.name) {
        unmapped.push({
          table: table.name,
          column: column.name,
          reason: 'it references a column that is not its table’s key',
        });
        continue;
      }
      fieldNames.add(name);
      fields[name] = {
        type: 'ref',
        to: entityNames.get(foreignKey.refTable)!,
        ...(column.notNull ? { required: true } : {}),
        onDelete: column.notNull ? 'restrict' : 'set-null',
      };
      columns.push({
        column: name,
        sql:
          target.typeName === 'uuid'
            ? ref(column.name)
            : `CASE WHEN ${ref(column.name)} IS NULL THEN NULL ELSE ${legacyIdSql(foreignKey.refTable, ref(column.name))} END`,
      });
      continue;
    }
    if (!mapped) {
      unmapped.push({
        table: table.name,
        column: column.name,
        reason: `type ${column.type} has no entity field type`,
      });
      continue;
    }
    fieldNames.add(name);
    const fallback = literalDefault(column, mapped.type);
    fields[name] = {
      type: mapped.type,
      ...(column.notNull ? { required: true } : {}),
      ...(table.unique.has(column.name) && mapped.type !== 'json' ? { unique: true } : {}),
      ...(column.maxLength !== null ? { maxLength: column.maxLength } : {}),
      ...(mapped.type === 'enum' ? { values: [...(context.enums.get(column.typeName) ?? [])] } : {}),
      ...(fallback === undefined ? {} : { default: fallback }),
    };
    columns.push({ column: name, sql: mapped.sql(ref(column.name)) });
    const multi = table.foreignKeys.find((fk) => fk.columns.length > 1 && fk.columns.includes(column.name));
    if (multi)
      notes.push(
        `${table.name}.${column.name} is part of a reference of several columns: kept as a plain field`,
      );
  }
  columns.push({ column: 'created_at', sql: createdAt ?? 'now()' });
  columns.push({ column: 'updated_at', sql: updatedAt ?? 'now()' });
  return { entity, fields, columns };
}

function keyColumn(table: SourceTable): SourceColumn {
  return table.columns.find((column) => column.name === table.primaryKey[0])!;
}
