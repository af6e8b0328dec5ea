import Type, { type Static } from 'typebox';
import { ConfigError } from '../errors.js';
import { firstSchemaProblem } from '../validation.js';
import {
  type Entity,
  FIELD_TYPES,
  type Field,
  type FieldType,
  INDEXED_TEXT_MAX_BYTES,
  type OnDelete,
} from './entity.js';
import { generatedNames } from './entity-ddl.js';

const Scalar = Type.Union([Type.String({ maxLength: 1000 }), Type.Number(), Type.Boolean(), Type.Null()]);

export const FieldDeclarationSchema = Type.Object(
  {
    type: Type.Union(Object.keys(FIELD_TYPES).map((name) => Type.Literal(name))),
    required: Type.Optional(Type.Boolean()),
    unique: Type.Optional(Type.Boolean()),
    index: Type.Optional(Type.Boolean()),
    search: Type.Optional(Type.Boolean()),
    default: Type.Optional(Scalar),
    maxLength: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_485_760 })),
    min: Type.Optional(Type.Number()),
    max: Type.Optional(Type.Number()),
    values: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 1000 }),
    ),
    to: Type.Optional(Type.String()),
    onDelete: Type.Optional(
      Type.Union([Type.Literal('cascade'), Type.Literal('restrict'), Type.Literal('set-null')]),
    ),
  },
  { additionalProperties: false },
);

export const EntityDeclarationSchema = Type.Object(
  {
    scope: Type.Union([Type.Literal('tenant'), Type.Literal('shared')]),
    feature: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    fields: Type.Record(Type.String(), FieldDeclarationSchema),
  },
  { additionalProperties: false },
);

export const EntitiesSchema = Type.Record(Type.String(), EntityDeclarationSchema);
export type EntityDeclarations = Static<typeof EntitiesSchema>;
type FieldDeclaration = Static<typeof FieldDeclarationSchema>;

export const IDENTIFIER = /^[a-z][a-z0-9_]{0,47}$/;

/** PostgreSQL's reserved key words (`pg_get_keywords()`, categories R and T). */
export const SQL_RESERVED = new Set([
  'all',
  'analyse',
  'analyze',
  'and',
  'any',
  'array',
  'as',
  'asc',
  'asymmetric',
  'authorization',
  'binary',
  'both',
  'case',
  'cast',
  'check',
  'collate',
  'collation',
  'column',
  'concurrently',
  'constraint',
  'create',
  'cross',
  'current_catalog',
  'current_date',
  'current_role',
  'current_schema',
  'current_time',
  'current_timestamp',
  'current_user',
  'default',
  'deferrable',
  'desc',
  'distinct',
  'do',
  'else',
  'end',
  'except',
  'false',
  'fetch',
  'for',
  'foreign',
  'freeze',
  'from',
  'full',
  'grant',
  'group',
  'having',
  'ilike',
  'in',
  'initially',
  'inner',
  'intersect',
  'into',
  'is',
  'isnull',
  'join',
  'lateral',
  'leading',
  'left',
  'like',
  'limit',
  'localtime',
  'localtimestamp',
  'natural',
  'not',
  'notnull',
  'null',
  'offset',
  'on',
  'only',
  'or',
  'order',
  'outer',
  'overlaps',
  'placing',
  'primary',
  'references',
  'returning',
  'right',
  'select',
  'session_user',
  'similar',
  'some',
  'symmetric',
  'table',
  'tablesample',
  'then',
  'to',
  'trailing',
  'true',
  'union',
  'unique',
  'user',
  'using',
  'variadic',
  'verbose',
  'when',
  'where',
  'window',
  'with',
]);

/** Resources Tenantry serves itself under /api/v1: an entity may not take their names. */
export const BUILT_IN_RESOURCES = new Set(['users', 'roles', 'groups', 'keys', 'clients', 'auth', 'export']);

/** Columns every table has, and list-query parameters a field name would collide with. */
export const RESERVED_FIELD_NAMES = new Set([
  'id',
  'tenant_id',
  'created_at',
  'updated_at',
  'sort',
  'limit',
  'next',
  'q',
]);

function checkName(name: string, key: string, what: string): void {
  if (!IDENTIFIER.test(name)) {
    throw new ConfigError(
      key,
      `${what} name must be lowercase a-z, 0-9 and _, starting with a letter, at most 48 characters`,
    );
  }
  if (SQL_RESERVED.has(name)) throw new ConfigError(key, `${what} name "${name}" is an SQL reserved word`);
  if (name.startsWith('pg_') || name.startsWith('tenantry')) {
    throw new ConfigError(key, `${what} name "${name}" uses a reserved prefix`);
  }
}

function checkDefault(field: FieldDeclaration, key: string): void {
  const value = field.default;
  if (value === undefined || value === null) return;
  const fail = (expected: string) => {
    throw new ConfigError(`${key}.default`, `must be ${expected} for a ${field.type} field`);
  };
  switch (field.type as FieldType) {
    case 'text':
      if (typeof value !== 'string') fail('a string');
      break;
    case 'integer':
      if (typeof value !== 'number' || !Number.isSafeInteger(value)) fail('an integer');
      break;
    case 'number':
      if (typeof value !== 'number') fail('a number');
      break;
    case 'boolean':
      if (typeof value !== 'boolean') fail('true or false');
      break;
    case 'enum':
      if (typeof value !== 'string' || !field.values?.includes(value)) fail('one of its values');
      break;
    case 'date':
      if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}$/.test(value)) fail('a YYYY-MM-DD date');
      break;
    case 'uuid':
      if (
        typeof value !== 'string' ||
        !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(value)
      ) {
        fail('a UUID');
      }
      break;
    default:
      throw new ConfigError(`${key}.default`, `a ${field.type} field cannot have a default`);
  }
}

function checkDefaultWithinLimits(field: FieldDeclaration, key: string): void {
  const value = field.default;
  if (typeof value === 'string' && field.maxLength !== undefined && [...value].length > field.maxLength) {
    throw new ConfigError(`${key}.default`, `is longer than maxLength (${field.maxLength})`);
  }
  if (typeof value === 'number') {
    if (field.min !== undefined && value < field.min)
      throw new ConfigError(`${key}.default`, `is below min (${field.min})`);
    if (field.max !== undefined && value > field.max)
      throw new ConfigError(`${key}.default`, `is above max (${field.max})`);
  }
}

/**
 * A unique or indexed text field holds what its btree index can: a declared maxLength above that
 * is refused rather than lowered, so the config never promises what a write would then refuse.
 */
function checkIndexedTextLimit(field: FieldDeclaration, key: string): void {
  if (field.type !== 'text' || !(field.unique || field.index)) return;
  const option = field.unique ? 'unique' : 'index';
  if (field.maxLength !== undefined && field.maxLength > INDEXED_TEXT_MAX_BYTES) {
    throw new ConfigError(
      `${key}.maxLength`,
      `is above ${INDEXED_TEXT_MAX_BYTES}: a text field with ${option}: true holds at most ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8 (what its index can hold); lower maxLength or drop ${option}`,
    );
  }
  if (typeof field.default === 'string' && Buffer.byteLength(field.default) > INDEXED_TEXT_MAX_BYTES) {
    throw new ConfigError(
      `${key}.default`,
      `is longer than ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8, the most a text field with ${option}: true holds`,
    );
  }
}

function normaliseField(
  entityName: string,
  name: string,
  declaration: FieldDeclaration,
  declarations: EntityDeclarations,
): Field {
  const key = `entities.${entityName}.fields.${name}`;
  checkName(name, key, 'field');
  if (RESERVED_FIELD_NAMES.has(name)) throw new ConfigError(key, `field name "${name}" is reserved`);
  const type = declaration.type as FieldType;
  const only = (option: keyof FieldDeclaration, types: readonly FieldType[]) => {
    if (declaration[option] !== undefined && !types.includes(type)) {
      throw new ConfigError(`${key}.${option}`, `only applies to ${types.join(', ')} fields`);
    }
  };
  only('maxLength', ['text']);
  only('min', ['integer', 'number']);
  only('max', ['integer', 'number']);
  only('values', ['enum']);
  only('to', ['ref']);
  only('onDelete', ['ref']);
  only('search', ['text']);
  if (type === 'enum' && declaration.values === undefined)
    throw new ConfigError(`${key}.values`, 'an enum needs values');
  if (declaration.values && new Set(declaration.values).size !== declaration.values.length) {
    throw new ConfigError(`${key}.values`, 'values must be distinct');
  }
  if (declaration.min !== undefined && declaration.max !== undefined && declaration.min > declaration.max) {
    throw new ConfigError(`${key}.min`, 'must not be greater than max');
  }
  if (type === 'json' && (declaration.unique || declaration.index)) {
    throw new ConfigError(
      `${key}.${declaration.unique ? 'unique' : 'index'}`,
      'json fields cannot be unique or indexed',
    );
  }
  let ref: Field['ref'];
  if (type === 'ref') {
    const target = declaration.to;
    if (target === undefined) throw new ConfigError(`${key}.to`, 'a ref needs the entity it points to');
    const targetDeclaration = declarations[target];
    if (!targetDeclaration) throw new ConfigError(`${key}.to`, `entity "${target}" is not declared`);
    if (targetDeclaration.scope !== 'tenant') {
      throw new ConfigError(`${key}.to`, `a ref must point to a tenant entity; "${target}" is shared`);
    }
    const onDelete = (declaration.onDelete ?? 'restrict') as OnDelete;
    if (onDelete === 'set-null' && declaration.required) {
      throw new ConfigError(`${key}.onDelete`, 'set-null cannot apply to a required field');
    }
    ref = { entity: target, onDelete };
  }
  checkDefault(declaration, key);
  checkDefaultWithinLimits(declaration, key);
  checkIndexedTextLimit(declaration, key);
  return Object.freeze({
    name,
    type,
    required: declaration.required ?? false,
    unique: declaration.unique ?? false,
    index: declaration.index ?? false,
    search: declaration.search ?? false,
    default: declaration.default,
    maxLength: declaration.maxLength,
    min: declaration.min,
    max: declaration.max,
    values: declaration.values ? Object.freeze([...declaration.values]) : undefined,
    ref: ref && Object.freeze(ref),
  });
}

/**
 * Validates the `entities` section of the config and returns the normalised, frozen model.
 * Throws ConfigError naming the offending key (the process then exits with code 2).
 */
export function normaliseEntities(raw: unknown): readonly Entity[] {
  if (raw === undefined || raw === null) return Object.freeze([]);
  const problem = firstSchemaProblem(EntitiesSchema, raw);
  if (problem) {
    const key = ['entities', ...problem.path].join('.');
    throw new ConfigError(key, problem.unknownKey ? 'is not a known setting' : problem.message);
  }
  const declarations = raw as EntityDeclarations;
  const entities = Object.entries(declarations).map(([name, declaration]): Entity => {
    const key = `entities.${name}`;
    checkName(name, key, 'entity');
    if (BUILT_IN_RESOURCES.has(name)) throw new ConfigError(key, `"${name}" is a built-in resource`);
    if (declaration.scope === 'shared') {
      for (const [fieldName, field] of Object.entries(declaration.fields)) {
        if (field.type === 'ref') {
          throw new ConfigError(`${key}.fields.${fieldName}`, 'a shared entity cannot reference tenant data');
        }
      }
    }
    const fields = Object.entries(declaration.fields).map(([fieldName, field]) =>
      normaliseField(name, fieldName, field, declarations),
    );
    return Object.freeze({
      name,
      scope: declaration.scope,
      feature: declaration.feature,
      fields: Object.freeze(fields),
    });
  });
  checkGeneratedNames(entities);
  return Object.freeze(entities);
}

/** Tables, indexes and constraints of one schema share a namespace: generated names must not clash. */
function checkGeneratedNames(entities: readonly Entity[]): void {
  for (const scope of ['tenant', 'shared'] as const) {
    const seen = new Map<string, string>();
    for (const entity of entities.filter((e) => e.scope === scope)) {
      for (const { name, field } of generatedNames(entity)) {
        const key =
          field === undefined ? `entities.${entity.name}` : `entities.${entity.name}.fields.${field}`;
        if (name.length > 63) {
          throw new ConfigError(
            key,
            `the database name "${name}" derived from it is longer than 63 characters; shorten the names`,
          );
        }
        const owner = seen.get(name);
        if (owner !== undefined) {
          throw new ConfigError(
            key,
            `the database name "${name}" derived from it is also derived from ${owner}; rename one`,
          );
        }
        seen.set(name, key);
      }
    }
  }
}
