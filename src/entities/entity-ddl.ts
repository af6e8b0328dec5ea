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

/** The expression of the generated search column, or undefined without search fields. */
function searchExpression(entity: Entity): string | undefined {
  const fields = entity.fields.filter((field) => field.search);
  if (fields.length === 0) return undefined;
  const document = fields.map((field) => `coalesce(${quoteIdent(field.name)}, '')`).join(` || ' ' || `);
  return `to_tsvector('simple'::regconfig, ${document})`;
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

/** A column of an entity table. */
export interface ColumnModel {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
  /** An SQL expression, already cast to the column type. */
  readonly default: string | undefined;
  /** The expression of a stored generated column (the search column). */
  readonly generated: string | undefined;
}

/** A named constraint or index of a table; `field` is the declared field it derives from. */
export interface NamedDefinition {
  readonly name: string;
  /** The definition after the name: `CHECK (...)`, `UNIQUE (...)`, `FOREIGN KEY ...`, `(cols)`. */
  readonly definition: string;
  readonly field: string | undefined;
}

/**
 * Everything the DDL of one entity creates, by name, in a form that can be compared: creating a
 * table renders it, and migrating compares two of them (see entity-migration.ts). Table names in
 * foreign keys are left unqualified, filled in by `inSchema`.
 */
export interface TableModel {
  readonly entity: Entity;
  readonly columns: readonly ColumnModel[];
  /** Primary key, checks and unique constraints (written inside CREATE TABLE). */
  readonly constraints: readonly NamedDefinition[];
  /** Indexes; the definition is what follows `ON <table>`. */
  readonly indexes: readonly NamedDefinition[];
  /** Foreign keys, created after every table exists. */
  readonly foreignKeys: readonly NamedDefinition[];
}

const SCHEMA_PLACEHOLDER = '\u0000schema\u0000';

/** Replaces the schema placeholder of a definition with the quoted schema. */
export function inSchema(definition: string, schema: string): string {
  return definition.replaceAll(SCHEMA_PLACEHOLDER, quoteIdent(schema));
}

function fieldColumn(field: Field): ColumnModel {
  const type = FIELD_TYPES[field.type];
  const hasDefault = field.default !== undefined && field.default !== null;
  return {
    name: field.name,
    type,
    notNull: field.required,
    default: hasDefault ? `${literal(field.default as string | number | boolean)}::${type}` : undefined,
    generated: undefined,
  };
}

function checkDefinitions(entity: Entity, field: Field): NamedDefinition[] {
  const column = quoteIdent(field.name);
  const named = (suffix: string, definition: string): NamedDefinition => ({
    name: `${entity.name}_${field.name}_${suffix}`.slice(0, 63),
    definition,
    field: field.name,
  });
  const result: NamedDefinition[] = [];
  if (field.maxLength !== undefined)
    result.push(named('length', `CHECK (char_length(${column}) <= ${field.maxLength})`));
  if (field.min !== undefined) result.push(named('min', `CHECK (${column} >= ${literal(field.min)})`));
  if (field.max !== undefined) result.push(named('max', `CHECK (${column} <= ${literal(field.max)})`));
  if (field.values !== undefined)
    result.push(named('values', `CHECK (${column} IN (${field.values.map(literal).join(', ')}))`));
  return result;
}

function onDeleteSql(field: Field): string {
  switch (field.ref?.onDelete) {
    case 'cascade':
      return 'CASCADE';
    case 'set-null':
      return `SET NULL (${quoteIdent(field.name)})`;
    default:
      return 'RESTRICT';
  }
}

/** The table model of an entity, tenant or shared. */
export function tableModel(entity: Entity): TableModel {
  const tenantScoped = entity.scope === 'tenant';
  const keyPrefix = tenantScoped ? 'tenant_id, ' : '';
  const timestamp = (name: string): ColumnModel => ({
    name,
    type: 'timestamptz',
    notNull: true,
    default: 'now()',
    generated: undefined,
  });
  const columns: ColumnModel[] = [
    ...(tenantScoped
      ? [{ name: 'tenant_id', type: 'uuid', notNull: true, default: undefined, generated: undefined }]
      : []),
    { name: 'id', type: 'uuid', notNull: true, default: undefined, generated: undefined },
    ...entity.fields.map(fieldColumn),
    timestamp('created_at'),
    timestamp('updated_at'),
  ];
  const search = searchExpression(entity);
  if (search)
    columns.push({
      name: SEARCH_COLUMN,
      type: 'tsvector',
      notNull: false,
      default: undefined,
      generated: search,
    });
  const constraints: NamedDefinition[] = [
    { name: `${entity.name}_pkey`, definition: `PRIMARY KEY (${keyPrefix}id)`, field: undefined },
    ...entity.fields.flatMap((field) => checkDefinitions(entity, field)),
    ...entity.fields
      .filter((field) => field.unique)
      .map((field) => ({
        name: uniqueConstraintName(entity, field),
        definition: `UNIQUE (${keyPrefix}${quoteIdent(field.name)})`,
        field: field.name,
      })),
  ];
  const indexed = entity.fields.filter((field) =>
    tenantScoped ? (field.index || field.ref) && !field.unique : field.index && !field.unique,
  );
  const indexes: NamedDefinition[] = indexed.map((field) => ({
    name: `${entity.name}_${field.name}_idx`.slice(0, 63),
    definition: `(${keyPrefix}${quoteIdent(field.name)})`,
    field: field.name,
  }));
  if (search)
    indexes.push({
      name: searchIndexName(entity),
      definition: `USING gin (${quoteIdent(SEARCH_COLUMN)})`,
      field: SEARCH_COLUMN,
    });
  const foreignKeys: NamedDefinition[] = tenantScoped
    ? entity.fields
        .filter((field) => field.ref)
        .map((field) => ({
          name: `${entity.name}_${field.name}_fkey`.slice(0, 63),
          definition:
            `FOREIGN KEY (tenant_id, ${quoteIdent(field.name)}) REFERENCES ${SCHEMA_PLACEHOLDER}.${quoteIdent(field.ref!.entity)} ` +
            `(tenant_id, id) ON DELETE ${onDeleteSql(field)}`,
          field: field.name,
        }))
    : [];
  return { entity, columns, constraints, indexes, foreignKeys };
}

/** `name type [NOT NULL] [DEFAULT ...]`, or the generated column. */
export function columnDefinition(column: ColumnModel): string {
  if (column.generated)
    return `${quoteIdent(column.name)} ${column.type} GENERATED ALWAYS AS (${column.generated}) STORED`;
  const parts = [quoteIdent(column.name), column.type];
  if (column.notNull) parts.push('NOT NULL');
  if (column.default !== undefined) parts.push(`DEFAULT ${column.default}`);
  return parts.join(' ');
}

export interface EntityDdlOptions {
  /** Schema the tables go to (`app`, a tenant schema, `shared`). */
  readonly schema: string;
  readonly runtimeRole: string;
}

export function createIndexSql(table: string, index: NamedDefinition): string {
  return `CREATE INDEX ${quoteIdent(index.name)} ON ${table} ${index.definition}`;
}

export function addConstraintSql(table: string, constraint: NamedDefinition, schema: string): string {
  return `ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(constraint.name)} ${inSchema(constraint.definition, schema)}`;
}

/**
 * One table without its foreign keys: CREATE TABLE with its constraints, indexes, and for tenant
 * entities forced row-level security with a permissive and a restrictive tenant policy and the
 * runtime role's grants (no TRUNCATE); shared entities are only readable by the runtime role.
 */
export function createTableSql(model: TableModel, options: EntityDdlOptions): string[] {
  const table = qualified(options.schema, model.entity.name);
  const role = quoteIdent(options.runtimeRole);
  const body = [
    ...model.columns.map(columnDefinition),
    ...model.constraints.map(
      (constraint) => `CONSTRAINT ${quoteIdent(constraint.name)} ${constraint.definition}`,
    ),
  ];
  const statements = [`CREATE TABLE ${table} (\n  ${body.join(',\n  ')}\n)`];
  statements.push(...model.indexes.map((index) => createIndexSql(table, index)));
  if (model.entity.scope === 'shared') {
    statements.push(`REVOKE ALL ON ${table} FROM ${role}`);
    statements.push(`GRANT SELECT ON ${table} TO ${role}`);
    return statements;
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
  return statements;
}

function schemaStatements(options: EntityDdlOptions): string[] {
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(options.schema)}`,
    `GRANT USAGE ON SCHEMA ${quoteIdent(options.schema)} TO ${quoteIdent(options.runtimeRole)}`,
  ];
}

/**
 * Statements that create the tables of the tenant `entities` in one schema: the same shape at
 * every isolation level (tenant_id, id, fields, timestamps; primary key (tenant_id, id);
 * composite foreign keys so no row can point into another tenant). Foreign keys come last, so
 * entities may reference each other in any order.
 */
export function tenantTablesDdl(entities: readonly Entity[], options: EntityDdlOptions): string[] {
  const models = entities.filter((entity) => entity.scope === 'tenant').map(tableModel);
  return [
    ...schemaStatements(options),
    ...models.flatMap((model) => createTableSql(model, options)),
    ...models.flatMap((model) =>
      model.foreignKeys.map((fk) =>
        addConstraintSql(qualified(options.schema, model.entity.name), fk, options.schema),
      ),
    ),
  ];
}

/** Statements for shared entities: schema `shared`, the runtime role may only read. */
export function sharedTablesDdl(entities: readonly Entity[], options: EntityDdlOptions): string[] {
  const models = entities.filter((entity) => entity.scope === 'shared').map(tableModel);
  return [...schemaStatements(options), ...models.flatMap((model) => createTableSql(model, options))];
}
