import type { Queryable } from '../db/database.js';
import { type Entity, FIELD_TYPES } from './entity.js';
import { SEARCH_COLUMN } from './entity-ddl.js';

/** Declared entities and the tables in the database disagree; serving would be wrong. */
export class SchemaDriftError extends Error {
  constructor(readonly differences: readonly string[]) {
    super(
      `the declared entities do not match the database:\n  ${differences.join('\n  ')}\n` +
        'apply the change to existing tenants with `tenantry migrate`, or restore the previous entities',
    );
    this.name = 'SchemaDriftError';
  }
}

interface Column {
  readonly type: string;
  readonly nullable: boolean;
}

type Tables = Map<string, Map<string, Column>>;

const INFORMATION_SCHEMA_TYPES: Record<string, string> = {
  timestamptz: 'timestamp with time zone',
};

function expectedType(sqlType: string): string {
  return INFORMATION_SCHEMA_TYPES[sqlType] ?? sqlType;
}

/** The tables and columns of the given schemas, keyed by schema. */
export async function readTables(db: Queryable, schemas: readonly string[]): Promise<Map<string, Tables>> {
  const { rows } = await db.query<{
    schema: string;
    table: string;
    column: string;
    type: string;
    nullable: string;
  }>(
    `SELECT c.table_schema AS schema, c.table_name AS table, c.column_name AS column, c.data_type AS type,
            c.is_nullable AS nullable
       FROM information_schema.columns c
       JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
      WHERE c.table_schema = ANY($1::text[]) AND t.table_type = 'BASE TABLE'`,
    [schemas],
  );
  const result = new Map<string, Tables>(schemas.map((schema) => [schema, new Map()]));
  for (const row of rows) {
    const tables = result.get(row.schema)!;
    const columns = tables.get(row.table) ?? new Map<string, Column>();
    columns.set(row.column, { type: row.type, nullable: row.nullable === 'YES' });
    tables.set(row.table, columns);
  }
  return result;
}

/** What differs between the declared entities of one scope and the tables of one schema. */
export function diffTables(entities: readonly Entity[], tables: Tables, where: string): string[] {
  const differences: string[] = [];
  const declared = new Set(entities.map((entity) => entity.name));
  for (const entity of entities) {
    const columns = tables.get(entity.name);
    if (!columns) {
      differences.push(`${where}: entity "${entity.name}" has no table`);
      continue;
    }
    const expected = new Map<string, Column>();
    if (entity.scope === 'tenant') expected.set('tenant_id', { type: 'uuid', nullable: false });
    expected.set('id', { type: 'uuid', nullable: false });
    for (const field of entity.fields) {
      expected.set(field.name, { type: expectedType(FIELD_TYPES[field.type]), nullable: !field.required });
    }
    expected.set('created_at', { type: 'timestamp with time zone', nullable: false });
    expected.set('updated_at', { type: 'timestamp with time zone', nullable: false });
    if (entity.fields.some((field) => field.search))
      expected.set(SEARCH_COLUMN, { type: 'tsvector', nullable: true });
    for (const [name, column] of expected) {
      const actual = columns.get(name);
      if (!actual)
        differences.push(`${where}: entity "${entity.name}" field "${name}" is missing from the table`);
      else if (actual.type !== column.type) {
        differences.push(
          `${where}: entity "${entity.name}" field "${name}" is ${actual.type} in the table, declared ${column.type}`,
        );
      } else if (actual.nullable !== column.nullable) {
        differences.push(
          `${where}: entity "${entity.name}" field "${name}" is ${actual.nullable ? 'optional' : 'required'} in the table, declared ${column.nullable ? 'optional' : 'required'}`,
        );
      }
    }
    for (const name of columns.keys()) {
      if (!expected.has(name))
        differences.push(`${where}: table of "${entity.name}" has column "${name}" that is not declared`);
    }
  }
  for (const table of tables.keys()) {
    if (!declared.has(table)) differences.push(`${where}: table "${table}" belongs to no declared entity`);
  }
  return differences;
}
