import { qualified, quoteIdent } from '../db/identifiers.js';
import { type Entity, FIELD_TYPES, type Field } from './entity.js';

/**
 * The tenant predicate of every policy. `nullif` matters: once a session has set the setting,
 * PostgreSQL keeps it as '' after the transaction, and ''::uuid would raise instead of matching
 * nothing. No tenant context must mean no rows, never an error or all rows.
 */
export const TENANT_PREDICATE = `tenant_id = nullif(current_setting('tenantry.tenant_id', true), '')::uuid`;

/** The generated column that full-text search (`?q=`) reads. Fields cannot start with `_`. */
export const SEARCH_COLUMN = '_search';

function literal(value: string | number | boolean): string {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new Error('non-finite default');
    return String(value);
  }
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  return `'${value.replaceAll("'", "''")}'`;
}

function columnSql(field: Field): string {
  const parts = [quoteIdent(field.name), FIELD_TYPES[field.type]];
  if (field.required) parts.push('NOT NULL');
  if (field.default !== undefined && field.default !== null) {
    parts.push(`DEFAULT ${literal(field.default)}::${FIELD_TYPES[field.type]}`);
  }
  return parts.join(' ');
}

function checks(entity: Entity, field: Field): string[] {
  const column = quoteIdent(field.name);
  const name = (suffix: string) => quoteIdent(`${entity.name}_${field.name}_${suffix}`.slice(0, 63));
  const result: string[] = [];
  if (field.maxLength !== undefined) {
    result.push(`CONSTRAINT ${name('length')} CHECK (char_length(${column}) <= ${field.maxLength})`);
  }
  if (field.min !== undefined)
    result.push(`CONSTRAINT ${name('min')} CHECK (${column} >= ${literal(field.min)})`);
  if (field.max !== undefined)
    result.push(`CONSTRAINT ${name('max')} CHECK (${column} <= ${literal(field.max)})`);
  if (field.values !== undefined) {
    result.push(
      `CONSTRAINT ${name('values')} CHECK (${column} IN (${field.values.map(literal).join(', ')}))`,
    );
  }
  return result;
}

function searchColumnSql(entity: Entity): string | undefined {
  const fields = entity.fields.filter((field) => field.search);
  if (fields.length === 0) return undefined;
  const document = fields.map((field) => `coalesce(${quoteIdent(field.name)}, '')`).join(` || ' ' || `);
  return `${quoteIdent(SEARCH_COLUMN)} tsvector GENERATED ALWAYS AS (to_tsvector('simple'::regconfig, ${document})) STORED`;
}

/** Name of the full-text index; `__` keeps it apart from every field index name. */
export function searchIndexName(entity: Entity): string {
  return `${entity.name}__search`;
}

/**
 * Every name the DDL of an entity creates in its schema (table, indexes, constraints). Config
 * validation checks they are distinct and fit PostgreSQL's 63 characters, so DDL never collides.
 */
export function generatedNames(entity: Entity): { name: string; field?: string }[] {
  const names: { name: string; field?: string }[] = [{ name: entity.name }, { name: `${entity.name}_pkey` }];
  for (const field of entity.fields) {
    if (field.unique) names.push({ name: uniqueConstraintName(entity, field), field: field.name });
    if ((field.index || field.ref) && !field.unique)
      names.push({ name: `${entity.name}_${field.name}_idx`, field: field.name });
    if (field.ref) names.push({ name: `${entity.name}_${field.name}_fkey`, field: field.name });
    if (field.maxLength !== undefined)
      names.push({ name: `${entity.name}_${field.name}_length`, field: field.name });
    if (field.min !== undefined) names.push({ name: `${entity.name}_${field.name}_min`, field: field.name });
    if (field.max !== undefined) names.push({ name: `${entity.name}_${field.name}_max`, field: field.name });
    if (field.values !== undefined)
      names.push({ name: `${entity.name}_${field.name}_values`, field: field.name });
  }
  if (entity.fields.some((field) => field.search)) names.push({ name: searchIndexName(entity) });
  return names;
}

/** Constraint name of a unique field, used to name the field in a 409. */
export function uniqueConstraintName(entity: Entity, field: Field): string {
  return `${entity.name}_${field.name}_key`.slice(0, 63);
}

export interface EntityDdlOptions {
  /** Schema the tables go to (`app`, a tenant schema, `shared`). */
  readonly schema: string;
  readonly runtimeRole: string;
}

/**
 * Statements that create the tables of `entities` in one schema: the same shape at every
 * isolation level (tenant_id, id, fields, timestamps; primary key (tenant_id, id); composite
 * foreign keys so no row can point into another tenant), forced row-level security with a
 * permissive and a restrictive tenant policy, and the runtime role's grants (no TRUNCATE).
 * Foreign keys come last, so entities may reference each other in any order.
 */
export function tenantTablesDdl(entities: readonly Entity[], options: EntityDdlOptions): string[] {
  const tenantEntities = entities.filter((entity) => entity.scope === 'tenant');
  const role = quoteIdent(options.runtimeRole);
  const statements: string[] = [`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`];
  statements.push(`GRANT USAGE ON SCHEMA ${quoteIdent(options.schema)} TO ${role}`);
  for (const entity of tenantEntities) {
    const table = qualified(options.schema, entity.name);
    const columns = [
      'tenant_id uuid NOT NULL',
      'id uuid NOT NULL',
      ...entity.fields.map(columnSql),
      'created_at timestamptz NOT NULL DEFAULT now()',
      'updated_at timestamptz NOT NULL DEFAULT now()',
    ];
    const search = searchColumnSql(entity);
    if (search) columns.push(search);
    const constraints = [
      `CONSTRAINT ${quoteIdent(`${entity.name}_pkey`)} PRIMARY KEY (tenant_id, id)`,
      ...entity.fields.flatMap((field) => checks(entity, field)),
      ...entity.fields
        .filter((field) => field.unique)
        .map(
          (field) =>
            `CONSTRAINT ${quoteIdent(uniqueConstraintName(entity, field))} UNIQUE (tenant_id, ${quoteIdent(field.name)})`,
        ),
    ];
    statements.push(`CREATE TABLE ${table} (\n  ${[...columns, ...constraints].join(',\n  ')}\n)`);
    for (const field of entity.fields.filter((f) => (f.index || f.ref) && !f.unique)) {
      const index = quoteIdent(`${entity.name}_${field.name}_idx`.slice(0, 63));
      statements.push(`CREATE INDEX ${index} ON ${table} (tenant_id, ${quoteIdent(field.name)})`);
    }
    if (search) {
      statements.push(
        `CREATE INDEX ${quoteIdent(searchIndexName(entity))} ON ${table} USING gin (${quoteIdent(SEARCH_COLUMN)})`,
      );
    }
    statements.push(`ALTER TABLE ${table} ENABLE ROW LEVEL SECURITY`);
    statements.push(`ALTER TABLE ${table} FORCE ROW LEVEL SECURITY`);
    statements.push(
      `CREATE POLICY tenant_rows ON ${table} AS PERMISSIVE FOR ALL USING (${TENANT_PREDICATE}) WITH CHECK (${TENANT_PREDICATE})`,
    );
    // Restrictive: a permissive policy added later by anyone can never widen access past the tenant.
    statements.push(
      `CREATE POLICY tenant_isolation ON ${table} AS RESTRICTIVE FOR ALL USING (${TENANT_PREDICATE}) WITH CHECK (${TENANT_PREDICATE})`,
    );
    statements.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${table} TO ${role}`);
  }
  for (const entity of tenantEntities) {
    for (const field of entity.fields.filter((f) => f.ref)) {
      const ref = field.ref!;
      const onDelete =
        ref.onDelete === 'cascade'
          ? 'CASCADE'
          : ref.onDelete === 'set-null'
            ? `SET NULL (${quoteIdent(field.name)})`
            : 'RESTRICT';
      statements.push(
        `ALTER TABLE ${qualified(options.schema, entity.name)} ADD CONSTRAINT ${quoteIdent(`${entity.name}_${field.name}_fkey`.slice(0, 63))} ` +
          `FOREIGN KEY (tenant_id, ${quoteIdent(field.name)}) REFERENCES ${qualified(options.schema, ref.entity)} (tenant_id, id) ON DELETE ${onDelete}`,
      );
    }
  }
  return statements;
}

/** Statements for shared entities: schema `shared`, the runtime role may only read. */
export function sharedTablesDdl(entities: readonly Entity[], options: EntityDdlOptions): string[] {
  const shared = entities.filter((entity) => entity.scope === 'shared');
  const role = quoteIdent(options.runtimeRole);
  const statements = [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`,
    `GRANT USAGE ON SCHEMA ${quoteIdent(options.schema)} TO ${role}`,
  ];
  for (const entity of shared) {
    const table = qualified(options.schema, entity.name);
    const columns = [
      'id uuid PRIMARY KEY',
      ...entity.fields.map(columnSql),
      'created_at timestamptz NOT NULL DEFAULT now()',
      'updated_at timestamptz NOT NULL DEFAULT now()',
      ...entity.fields.flatMap((field) => checks(entity, field)),
      ...entity.fields
        .filter((field) => field.unique)
        .map(
          (field) =>
            `CONSTRAINT ${quoteIdent(uniqueConstraintName(entity, field))} UNIQUE (${quoteIdent(field.name)})`,
        ),
    ];
    const search = searchColumnSql(entity);
    if (search) columns.splice(entity.fields.length + 3, 0, search);
    statements.push(`CREATE TABLE ${table} (\n  ${columns.join(',\n  ')}\n)`);
    for (const field of entity.fields.filter((f) => f.index && !f.unique)) {
      statements.push(
        `CREATE INDEX ${quoteIdent(`${entity.name}_${field.name}_idx`.slice(0, 63))} ON ${table} (${quoteIdent(field.name)})`,
      );
    }
    if (search) {
      statements.push(
        `CREATE INDEX ${quoteIdent(searchIndexName(entity))} ON ${table} USING gin (${quoteIdent(SEARCH_COLUMN)})`,
      );
    }
    statements.push(`REVOKE ALL ON ${table} FROM ${role}`);
    statements.push(`GRANT SELECT ON ${table} TO ${role}`);
  }
  return statements;
}
