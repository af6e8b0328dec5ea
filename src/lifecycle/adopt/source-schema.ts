import type pg from 'pg';

/** A column of a table in the database being adopted. */
export interface SourceColumn {
  readonly name: string;
  /** As PostgreSQL spells it with its modifier: `character varying(80)`, `integer[]`. */
  readonly type: string;
  /** The base type's name (`varchar`, `int4`, `_int4` for an array, an enum's own name). */
  readonly typeName: string;
  readonly isEnum: boolean;
  readonly isArray: boolean;
  readonly notNull: boolean;
  /** The default's SQL, when there is one. */
  readonly defaultSql: string | null;
  /** `character varying(n)`: n. */
  readonly maxLength: number | null;
}

export interface SourceForeignKey {
  readonly columns: readonly string[];
  readonly refTable: string;
  readonly refColumns: readonly string[];
}

export interface SourceTable {
  readonly name: string;
  readonly columns: readonly SourceColumn[];
  readonly primaryKey: readonly string[];
  /** Columns with a single-column unique constraint. */
  readonly unique: ReadonlySet<string>;
  readonly foreignKeys: readonly SourceForeignKey[];
  readonly rows: number;
}

export interface SourceSchema {
  readonly schema: string;
  readonly tables: readonly SourceTable[];
  /** Enum types by name: their values in order. */
  readonly enums: ReadonlyMap<string, readonly string[]>;
}

/** Reads the tables of `schema` (or of `only`): columns, keys, references, enum values, row estimates. */
export async function readSourceSchema(
  client: pg.ClientBase,
  schema: string,
  only?: readonly string[],
): Promise<SourceSchema> {
  const { rows: columns } = await client.query<{
    table: string;
    column: string;
    type: string;
    typename: string;
    typtype: string;
    typcategory: string;
    not_null: boolean;
    default_sql: string | null;
    atttypmod: number;
    attnum: number;
  }>(
    `SELECT c.relname AS table, a.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
            t.typname AS typename, t.typtype, t.typcategory, a.attnotnull AS not_null,
            pg_get_expr(d.adbin, d.adrelid) AS default_sql, a.atttypmod, a.attnum
       FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND a.attgenerated = ''
      ORDER BY c.relname, a.attnum`,
    [schema],
  );
  const { rows: constraints } = await client.query<{
    table: string;
    kind: 'p' | 'u' | 'f';
    columns: string[];
    ref_table: string | null;
    ref_columns: string[] | null;
  }>(
    `SELECT c.relname AS table, con.contype AS kind,
            ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(num, ord)
                    JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord)::text[] AS columns,
            fc.relname AS ref_table,
            CASE WHEN con.contype = 'f' THEN ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(num, ord)
                    JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord)::text[] END AS ref_columns
       FROM pg_constraint con
       JOIN pg_class c ON c.oid = con.conrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_class fc ON fc.oid = con.confrelid
      WHERE n.nspname = $1 AND con.contype IN ('p', 'u', 'f')
      ORDER BY c.relname, con.conname`,
    [schema],
  );
  const { rows: enumRows } = await client.query<{ name: string; value: string }>(
    `SELECT t.typname AS name, e.enumlabel AS value FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
      ORDER BY t.typname, e.enumsortorder`,
  );
  const { rows: estimates } = await client.query<{ table: string; rows: string }>(
    `SELECT c.relname AS table, greatest(c.reltuples, 0)::bigint::text AS rows FROM pg_class c
       JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')`,
    [schema],
  );
  const enums = new Map<string, string[]>();
  for (const row of enumRows) enums.set(row.name, [...(enums.get(row.name) ?? []), row.value]);
  const names = [...new Set(columns.map((column) => column.table))].filter(
    (name) => only === undefined || only.includes(name),
  );
  const tables = names.map((name): SourceTable => {
    const own = constraints.filter((constraint) => constraint.table === name);
    const varchar = (type: string) => /^character varying\((\d+)\)$/.exec(type);
    return {
      name,
      columns: columns
        .filter((column) => column.table === name)
        .map((column) => ({
          name: column.column,
          type: column.type,
          typeName: column.typename,
          isEnum: column.typtype === 'e',
          isArray: column.typcategory === 'A',
          notNull: column.not_null,
          defaultSql: column.default_sql,
          maxLength: varchar(column.type) ? Number(varchar(column.type)![1]) : null,
        })),
      primaryKey: own.find((constraint) => constraint.kind === 'p')?.columns ?? [],
      unique: new Set(
        own
          .filter((constraint) => constraint.kind === 'u' && constraint.columns.length === 1)
          .map((c) => c.columns[0]!),
      ),
      foreignKeys: own
        .filter((constraint) => constraint.kind === 'f')
        .map((constraint) => ({
          columns: constraint.columns,
          refTable: constraint.ref_table ?? '',
          refColumns: constraint.ref_columns ?? [],
        })),
      rows: Number(estimates.find((estimate) => estimate.table === name)?.rows ?? 0),
    };
  });
  return { schema, tables, enums };
}
