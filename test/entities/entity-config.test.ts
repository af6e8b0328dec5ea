import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load-config.js';
import type { Entity, Field } from '../../src/entities/entity.js';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { generatedNames } from '../../src/entities/entity-ddl.js';
import { ConfigError } from '../../src/errors.js';
import { runCli, spawnCli } from '../helpers/cli.js';

/** The `entities:` section of the issue's example config, as a user writes it. */
const ISSUE_EXAMPLE_YAML = `
server:
  baseDomain: example.com
entities:
  projects:
    scope: tenant
    fields:
      name:   { type: text, required: true, unique: true, maxLength: 200 }
      status: { type: enum, values: [active, archived], default: active }
  tasks:
    scope: tenant
    fields:
      project:  { type: ref, to: projects, required: true, onDelete: cascade }
      title:    { type: text, required: true, search: true }
      done:     { type: boolean, default: false }
      due:      { type: date }
      estimate: { type: number, min: 0 }
      meta:     { type: json }
  countries:
    scope: shared
    fields:
      code: { type: text, required: true, unique: true }
      name: { type: text }
`;

type Declarations = Record<string, unknown>;

/** One tenant entity `notes` with the given fields. */
const notes = (fields: Record<string, unknown>): Declarations => ({ notes: { scope: 'tenant', fields } });
/** One field `f` of `notes`. */
const field = (declaration: Record<string, unknown>): Declarations => notes({ f: declaration });
const F = 'entities.notes.fields.f';

function configErrorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

function entity(entities: readonly Entity[], name: string): Entity {
  const found = entities.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no entity ${name}`);
  return found;
}

function fieldOf(entities: readonly Entity[], entityName: string, name: string): Field {
  const found = entity(entities, entityName).fields.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no field ${entityName}.${name}`);
  return found;
}

let dir: string;
let fileCounter = 0;

/** Writes a config file holding `entities` and returns its path. */
function configFile(entities: unknown, extension: 'yaml' | 'json' = 'yaml'): string {
  fileCounter += 1;
  const path = join(dir, `config-${fileCounter}.${extension}`);
  const body = { server: { baseDomain: 'example.com' }, entities };
  writeFileSync(path, extension === 'json' ? JSON.stringify(body) : YAML.stringify(body));
  return path;
}

let issueExample: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tenantry-entity-config-'));
  issueExample = join(dir, 'issue-example.yaml');
  writeFileSync(issueExample, ISSUE_EXAMPLE_YAML);
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('normaliseEntities: valid declarations', () => {
  it('accepts the issue example and fills in every option', () => {
    const config = loadConfig({ file: issueExample, env: {} });
    const entities = config.entities;

    expect(entities.map((e) => [e.name, e.scope])).toEqual([
      ['projects', 'tenant'],
      ['tasks', 'tenant'],
      ['countries', 'shared'],
    ]);
    expect(fieldOf(entities, 'projects', 'name')).toEqual({
      name: 'name',
      type: 'text',
      required: true,
      unique: true,
      index: false,
      search: false,
      default: undefined,
      maxLength: 200,
      min: undefined,
      max: undefined,
      values: undefined,
      ref: undefined,
    });
    expect(fieldOf(entities, 'projects', 'status')).toMatchObject({
      type: 'enum',
      values: ['active', 'archived'],
      default: 'active',
      required: false,
    });
    expect(fieldOf(entities, 'tasks', 'project')).toMatchObject({
      type: 'ref',
      required: true,
      ref: { entity: 'projects', onDelete: 'cascade' },
    });
    expect(fieldOf(entities, 'tasks', 'title')).toMatchObject({ type: 'text', search: true });
    expect(fieldOf(entities, 'tasks', 'done')).toMatchObject({ type: 'boolean', default: false });
    expect(fieldOf(entities, 'tasks', 'due').type).toBe('date');
    expect(fieldOf(entities, 'tasks', 'estimate')).toMatchObject({ type: 'number', min: 0 });
    expect(fieldOf(entities, 'tasks', 'meta').type).toBe('json');
    expect(fieldOf(entities, 'countries', 'code')).toMatchObject({ required: true, unique: true });

    // The model is immutable, down to the enum values and the ref.
    expect(Object.isFrozen(entities)).toBe(true);
    expect(Object.isFrozen(entity(entities, 'tasks').fields)).toBe(true);
    expect(Object.isFrozen(fieldOf(entities, 'projects', 'status').values)).toBe(true);
    expect(Object.isFrozen(fieldOf(entities, 'tasks', 'project').ref)).toBe(true);
  });

  it('reads the same model from a JSON config file', () => {
    const yaml = loadConfig({ file: issueExample, env: {} }).entities;
    const parsed = YAML.parse(ISSUE_EXAMPLE_YAML) as { entities: unknown };
    const json = loadConfig({ file: configFile(parsed.entities, 'json'), env: {} }).entities;
    expect(json).toEqual(yaml);
  });

  it('treats a missing or empty section as no entities', () => {
    expect(normaliseEntities(undefined)).toEqual([]);
    expect(normaliseEntities(null)).toEqual([]);
    expect(normaliseEntities({})).toEqual([]);
    const path = join(dir, 'empty-entities.yaml');
    writeFileSync(path, 'entities:\n');
    expect(loadConfig({ file: path, env: {} }).entities).toEqual([]);
  });

  it('defaults a ref to onDelete restrict, and accepts set-null on an optional ref', () => {
    const entities = normaliseEntities({
      folders: {
        scope: 'tenant',
        fields: {
          parent: { type: 'ref', to: 'folders', onDelete: 'set-null' },
          owner: { type: 'ref', to: 'people' },
        },
      },
      people: { scope: 'tenant', fields: { name: { type: 'text' } } },
    });
    expect(fieldOf(entities, 'folders', 'parent').ref).toEqual({ entity: 'folders', onDelete: 'set-null' });
    expect(fieldOf(entities, 'folders', 'owner').ref).toEqual({ entity: 'people', onDelete: 'restrict' });
  });

  it.each<[string, Declarations]>([
    ['a name of 48 characters', { [`a${'b'.repeat(47)}`]: { scope: 'tenant', fields: {} } }],
    [
      'digits and underscores',
      { order_items_2: { scope: 'tenant', fields: { line_no: { type: 'integer' } } } },
    ],
    ['an entity without fields', { tags: { scope: 'tenant', fields: {} } }],
    ['words that are not reserved', notes({ name: { type: 'text' }, status: { type: 'text' } })],
    ['min equal to max', field({ type: 'integer', min: 3, max: 3 })],
    ['a null default', field({ type: 'text', default: null })],
    ['a date default', field({ type: 'date', default: '2024-02-29' })],
    ['a uuid default', field({ type: 'uuid', default: '0190f5c2-6f3d-7a2b-8c4d-0123456789ab' })],
    ['an integer default', field({ type: 'integer', default: 7 })],
    ['a feature', { notes: { scope: 'tenant', feature: 'notes', fields: {} } }],
  ])('accepts %s', (_name, declarations) => {
    expect(() => normaliseEntities(declarations)).not.toThrow();
  });
});

interface BadCase {
  readonly what: string;
  readonly entities: unknown;
  readonly key: string;
  readonly message?: RegExp;
}

const badEntityNames: BadCase[] = [
  ...['Projects', '2fa', 'my-table', 'my table', 'é', `a${'b'.repeat(48)}`].map(
    (name): BadCase => ({
      what: `entity name "${name}" outside the identifier allowlist`,
      entities: { [name]: { scope: 'tenant', fields: {} } },
      key: `entities.${name}`,
      message: /lowercase a-z/,
    }),
  ),
  ...['select', 'table', 'user', 'order', 'where'].map(
    (name): BadCase => ({
      what: `entity name "${name}", an SQL reserved word`,
      entities: { [name]: { scope: 'tenant', fields: {} } },
      key: `entities.${name}`,
      message: /reserved word/,
    }),
  ),
  ...['users', 'roles', 'groups', 'keys', 'clients', 'auth', 'export'].map(
    (name): BadCase => ({
      what: `entity name "${name}", a built-in resource`,
      entities: { [name]: { scope: 'tenant', fields: {} } },
      key: `entities.${name}`,
      message: /built-in resource/,
    }),
  ),
  ...['pg_stats', 'tenantry_jobs'].map(
    (name): BadCase => ({
      what: `entity name "${name}" with a reserved prefix`,
      entities: { [name]: { scope: 'shared', fields: {} } },
      key: `entities.${name}`,
      message: /reserved prefix/,
    }),
  ),
];

const badFieldNames: BadCase[] = [
  ...['id', 'tenant_id', 'created_at', 'updated_at', 'sort', 'limit', 'next', 'q'].map(
    (name): BadCase => ({
      what: `field name "${name}", reserved`,
      entities: notes({ title: { type: 'text' }, [name]: { type: 'text' } }),
      key: `entities.notes.fields.${name}`,
      message: /reserved/,
    }),
  ),
  ...['Title', '_search', '1st', 'due-date'].map(
    (name): BadCase => ({
      what: `field name "${name}" outside the identifier allowlist`,
      entities: notes({ [name]: { type: 'text' } }),
      key: `entities.notes.fields.${name}`,
      message: /lowercase a-z/,
    }),
  ),
  {
    what: 'field name "select", an SQL reserved word',
    entities: notes({ select: { type: 'text' } }),
    key: 'entities.notes.fields.select',
    message: /reserved word/,
  },
  {
    what: 'field name "pg_class" with a reserved prefix',
    entities: notes({ pg_class: { type: 'text' } }),
    key: 'entities.notes.fields.pg_class',
    message: /reserved prefix/,
  },
];

const badShapes: BadCase[] = [
  { what: 'entities that are a list', entities: [{ scope: 'tenant' }], key: 'entities' },
  { what: 'an entity that is not an object', entities: { notes: 'text' }, key: 'entities.notes' },
  {
    what: 'an unknown entity option',
    entities: { notes: { scope: 'tenant', fields: {}, colour: 'red' } },
    key: 'entities.notes.colour',
    message: /not a known setting/,
  },
  { what: 'a missing scope', entities: { notes: { fields: {} } }, key: 'entities.notes.scope' },
  {
    what: 'an unknown scope',
    entities: { notes: { scope: 'global', fields: {} } },
    key: 'entities.notes.scope',
  },
  { what: 'missing fields', entities: { notes: { scope: 'tenant' } }, key: 'entities.notes.fields' },
  { what: 'a field that is not an object', entities: notes({ f: 'text' }), key: F },
  { what: 'a field without a type', entities: field({ required: true }), key: `${F}.type` },
  { what: 'an unknown field type', entities: field({ type: 'money' }), key: `${F}.type` },
  { what: 'a type in capitals', entities: field({ type: 'Text' }), key: `${F}.type` },
  {
    what: 'an unknown field option',
    entities: field({ type: 'text', colour: 'red' }),
    key: `${F}.colour`,
    message: /not a known setting/,
  },
  {
    what: 'a misspelt field option',
    entities: field({ type: 'text', maxlength: 10 }),
    key: `${F}.maxlength`,
  },
  {
    what: 'required that is not a boolean',
    entities: field({ type: 'text', required: 'yes' }),
    key: `${F}.required`,
  },
  { what: 'a maxLength of 0', entities: field({ type: 'text', maxLength: 0 }), key: `${F}.maxLength` },
  {
    what: 'a fractional maxLength',
    entities: field({ type: 'text', maxLength: 2.5 }),
    key: `${F}.maxLength`,
  },
  {
    what: 'an unknown onDelete',
    entities: { ...field({ type: 'ref', to: 'notes', onDelete: 'nullify' }) },
    key: `${F}.onDelete`,
  },
];

const badOptions: BadCase[] = [
  ...(['integer', 'number', 'boolean', 'date', 'enum', 'json', 'uuid'] as const).map(
    (type): BadCase => ({
      what: `maxLength on a ${type} field`,
      entities: field({ type, maxLength: 10, ...(type === 'enum' ? { values: ['a'] } : {}) }),
      key: `${F}.maxLength`,
      message: /only applies to text/,
    }),
  ),
  { what: 'min on a text field', entities: field({ type: 'text', min: 1 }), key: `${F}.min` },
  { what: 'max on a date field', entities: field({ type: 'date', max: 1 }), key: `${F}.max` },
  { what: 'values on a text field', entities: field({ type: 'text', values: ['a'] }), key: `${F}.values` },
  { what: 'to on a text field', entities: field({ type: 'text', to: 'notes' }), key: `${F}.to` },
  {
    what: 'onDelete on a uuid field',
    entities: field({ type: 'uuid', onDelete: 'cascade' }),
    key: `${F}.onDelete`,
  },
  {
    what: 'search on an integer field',
    entities: field({ type: 'integer', search: true }),
    key: `${F}.search`,
  },
  {
    what: 'an enum without values',
    entities: field({ type: 'enum' }),
    key: `${F}.values`,
    message: /needs values/,
  },
  {
    what: 'an enum with an empty list of values',
    entities: field({ type: 'enum', values: [] }),
    key: `${F}.values`,
  },
  {
    what: 'an enum with an empty value',
    entities: field({ type: 'enum', values: [''] }),
    key: `${F}.values.0`,
  },
  {
    what: 'an enum with repeated values',
    entities: field({ type: 'enum', values: ['a', 'b', 'a'] }),
    key: `${F}.values`,
    message: /distinct/,
  },
  {
    what: 'min greater than max',
    entities: field({ type: 'number', min: 10, max: 1 }),
    key: `${F}.min`,
    message: /greater than max/,
  },
  { what: 'a unique json field', entities: field({ type: 'json', unique: true }), key: `${F}.unique` },
  { what: 'an indexed json field', entities: field({ type: 'json', index: true }), key: `${F}.index` },
];

const badDefaults: BadCase[] = (
  [
    ['text', 5],
    ['text', true],
    ['integer', 'seven'],
    ['integer', 1.5],
    ['integer', 2 ** 60],
    ['number', '1.5'],
    ['boolean', 'yes'],
    ['boolean', 0],
    ['date', '2024-1-1'],
    ['date', 'tomorrow'],
    ['date', 20240101],
    ['uuid', 'not-a-uuid'],
    ['json', 'x'],
    ['timestamp', 'now'],
  ] as const
).map(
  ([type, value]): BadCase => ({
    what: `default ${JSON.stringify(value)} on a ${type} field`,
    entities: field({ type, default: value }),
    key: `${F}.default`,
  }),
);
badDefaults.push(
  {
    what: 'an enum default that is not one of its values',
    entities: field({ type: 'enum', values: ['open', 'closed'], default: 'pending' }),
    key: `${F}.default`,
    message: /one of its values/,
  },
  {
    what: 'a default on a ref',
    entities: notes({
      parent: { type: 'ref', to: 'notes', default: '0190f5c2-6f3d-7a2b-8c4d-0123456789ab' },
    }),
    key: 'entities.notes.fields.parent.default',
  },
  { what: 'an object default', entities: field({ type: 'json', default: { a: 1 } }), key: `${F}.default` },
);

const badRefs: BadCase[] = [
  {
    what: 'a ref without a target',
    entities: notes({ parent: { type: 'ref' } }),
    key: 'entities.notes.fields.parent.to',
    message: /needs the entity/,
  },
  {
    what: 'a ref to a missing entity',
    entities: notes({ project: { type: 'ref', to: 'projects' } }),
    key: 'entities.notes.fields.project.to',
    message: /"projects" is not declared/,
  },
  {
    what: 'a ref to a shared entity',
    entities: {
      countries: { scope: 'shared', fields: { code: { type: 'text' } } },
      offices: { scope: 'tenant', fields: { country: { type: 'ref', to: 'countries' } } },
    },
    key: 'entities.offices.fields.country.to',
    message: /shared/,
  },
  {
    what: 'a shared entity with a ref',
    entities: {
      offices: { scope: 'tenant', fields: { name: { type: 'text' } } },
      countries: {
        scope: 'shared',
        fields: { code: { type: 'text' }, office: { type: 'ref', to: 'offices' } },
      },
    },
    key: 'entities.countries.fields.office',
    message: /shared entity cannot reference/,
  },
  {
    what: 'set-null on a required ref',
    entities: notes({ parent: { type: 'ref', to: 'notes', required: true, onDelete: 'set-null' } }),
    key: 'entities.notes.fields.parent.onDelete',
    message: /set-null/,
  },
];

describe.each<[string, BadCase[]]>([
  ['entity names', badEntityNames],
  ['field names', badFieldNames],
  ['shapes and unknown options', badShapes],
  ['options on the wrong type', badOptions],
  ['defaults of the wrong type', badDefaults],
  ['references', badRefs],
])('normaliseEntities refuses bad %s', (_group, cases) => {
  it.each(cases.map((c) => [c.what, c] as const))('%s', (_what, c) => {
    const error = configErrorOf(() => normaliseEntities(c.entities));
    expect(error.key).toBe(c.key);
    expect(error.message.startsWith(`${c.key}: `)).toBe(true);
    if (c.message) expect(error.message).toMatch(c.message);
  });

  it('names the same key when the section comes from a config file', () => {
    for (const c of cases) {
      const error = configErrorOf(() => loadConfig({ file: configFile(c.entities), env: {} }));
      expect({ what: c.what, key: error.key }).toEqual({ what: c.what, key: c.key });
    }
  });
});

describe('normaliseEntities refuses contradictory declarations', () => {
  it.each<[string, Declarations, string]>([
    [
      'a text default longer than maxLength',
      field({ type: 'text', maxLength: 3, default: 'toolong' }),
      `${F}.default`,
    ],
    ['an integer default below min', field({ type: 'integer', min: 1, default: 0 }), `${F}.default`],
    ['a number default above max', field({ type: 'number', max: 1, default: 2.5 }), `${F}.default`],
  ])('%s', (_what, declarations, key) => {
    expect(configErrorOf(() => normaliseEntities(declarations)).key).toBe(key);
  });

  // Every table, index and unique constraint is a relation of its schema: two with one name
  // make the DDL fail at start or at provisioning, with no key to point to.
  it.each<[string, Declarations, string[]]>([
    [
      'an entity named like the primary key of another (x and x_pkey)',
      { x: { scope: 'tenant', fields: {} }, x_pkey: { scope: 'tenant', fields: {} } },
      ['entities.x_pkey', 'entities.x'],
    ],
    [
      'unique constraints of two entities with one name (a.b_c and a_b.c give a_b_c_key)',
      {
        a: { scope: 'tenant', fields: { b_c: { type: 'text', unique: true } } },
        a_b: { scope: 'tenant', fields: { c: { type: 'text', unique: true } } },
      },
      ['entities.a_b.fields.c', 'entities.a.fields.b_c', 'entities.a_b', 'entities.a'],
    ],
    [
      'long names whose constraint names are the same once cut to 63 characters',
      {
        [`a${'b'.repeat(47)}`]: {
          scope: 'tenant',
          fields: {
            reference_code_a: { type: 'text', unique: true },
            reference_code_b: { type: 'text', unique: true },
          },
        },
      },
      [
        `entities.a${'b'.repeat(47)}.fields.reference_code_b`,
        `entities.a${'b'.repeat(47)}.fields.reference_code_a`,
      ],
    ],
  ])('%s', (_what, declarations, keys) => {
    const error = configErrorOf(() => normaliseEntities(declarations));
    expect(keys).toContain(error.key);
  });
});

describe('names that could have clashed by construction', () => {
  it('accepts a field "search" with an index next to a searchable field: the full-text index has a name of its own', () => {
    const [entity] = normaliseEntities(
      notes({ search: { type: 'text', index: true }, body: { type: 'text', search: true } }),
    );
    const names = generatedNames(entity!).map((generated) => generated.name);
    expect(names).toContain('notes_search_idx');
    expect(names).toContain('notes__search');
    expect(new Set(names).size).toBe(names.length);
  });
});

describe('the CLI with an invalid entity in the config file', () => {
  it.each<[string, Declarations, string]>([
    ['a built-in resource name', { users: { scope: 'tenant', fields: {} } }, 'entities.users'],
    [
      'a ref to a missing entity',
      notes({ project: { type: 'ref', to: 'projects' } }),
      'entities.notes.fields.project.to',
    ],
    ['an unknown field type', field({ type: 'money' }), `${F}.type`],
  ])('tenants list exits 2 naming the key: %s', async (_what, declarations, key) => {
    const dataDir = join(dir, `data-${fileCounter}`);
    const result = await runCli(['tenants', 'list', '--config', configFile(declarations)], {
      TENANTRY_DATA_DIR: dataDir,
    });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`config error: ${key}:`);
    expect(result.stdout).toBe('');
    // Refused before anything was opened or created.
    expect(existsSync(dataDir)).toBe(false);
  });

  it('the built binary exits 2 with the key on stderr', async () => {
    const dataDir = join(dir, 'data-binary');
    const result = await spawnCli(
      ['tenants', 'list', '--config', configFile(notes({ id: { type: 'text' } }))],
      { TENANTRY_DATA_DIR: dataDir },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('entities.notes.fields.id');
    expect(existsSync(dataDir)).toBe(false);
  });

  it('the issue example is accepted by the CLI', async () => {
    const env = { TENANTRY_DATA_DIR: join(dir, 'data-valid') };
    expect((await runCli(['init-db', '--config', issueExample], env)).code).toBe(0);
    const result = await runCli(['tenants', 'list', '--json', '--config', issueExample], env);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual([]);
  });
});
