import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database, Queryable } from '../../src/db/database.js';
import { openPglite } from '../../src/db/pglite-driver.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { ensureRuntimeRole } from '../../src/db/roles.js';
import { type Entity, FIELD_TYPES, fieldByName, SYSTEM_COLUMNS } from '../../src/entities/entity.js';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { sharedTablesDdl, tenantTablesDdl } from '../../src/entities/entity-ddl.js';
import { type MigrationPlan, planEntityChange, planMigration } from '../../src/entities/entity-migration.js';
import { diffTables, readTables } from '../../src/entities/entity-schema.js';
import { DRIVERS } from '../helpers/harness.js';
import { createDatabase, withServer } from '../helpers/postgres.js';

/**
 * The planner's contract: building declaration A, then applying plan(A -> B) in one transaction,
 * leaves exactly the catalogue that building B from scratch gives (columns, defaults, generated
 * columns, constraints, indexes, row-level security, policies, grants), and keeps the rows.
 *
 * Creating an entity is several statements (table, indexes, row security, policies, grants), each
 * its own step, since every step runs as one extended-protocol command; a shared table never gets
 * FORCE ROW LEVEL SECURITY, even around a backfill.
 */

const RUNTIME_ROLE = 'tenantry_runtime';
const TENANT = '0b7c6a52-9a52-4c4b-8f0e-3f9a3c1d2e01';

type FieldDeclaration = Record<string, unknown>;
type Declarations = Record<
  string,
  { scope: 'tenant' | 'shared'; feature?: string; fields: Record<string, FieldDeclaration> }
>;

/** Declaration A of most cases: every field type, checks, a ref, search, a shared entity. */
function base(): Declarations {
  return {
    projects: {
      scope: 'tenant',
      fields: {
        name: { type: 'text', required: true, unique: true, maxLength: 100, search: true },
        status: { type: 'enum', values: ['active', 'archived'], default: 'active' },
        budget: { type: 'number', min: 0 },
        notes: { type: 'text' },
        owner: { type: 'uuid' },
      },
    },
    tasks: {
      scope: 'tenant',
      fields: {
        project: { type: 'ref', to: 'projects', required: true, onDelete: 'cascade' },
        title: { type: 'text', required: true, search: true },
        done: { type: 'boolean', default: false },
        estimate: { type: 'number' },
        payload: { type: 'text' },
        due: { type: 'date' },
        rank: { type: 'integer', index: true },
        meta: { type: 'json' },
        seen: { type: 'timestamp' },
      },
    },
    countries: {
      scope: 'shared',
      fields: {
        code: { type: 'text', required: true, unique: true },
        name: { type: 'text' },
        population: { type: 'integer' },
      },
    },
  };
}

/** `entity.field` of a declaration, which must exist. */
function fieldOf(d: Declarations, path: string): FieldDeclaration {
  const [entity, field] = path.split('.') as [string, string];
  const found = d[entity]?.fields[field];
  if (!found) throw new Error(`no field ${path}`);
  return found;
}
/** Sets `entity.field` to a new declaration. */
function setField(d: Declarations, path: string, declaration: FieldDeclaration): void {
  const [entity, field] = path.split('.') as [string, string];
  const target = d[entity];
  if (!target) throw new Error(`no entity ${entity}`);
  target.fields[field] = declaration;
}
/** Merges options into `entity.field`; an option given as undefined is removed. */
function patch(d: Declarations, path: string, options: FieldDeclaration): void {
  const field = fieldOf(d, path);
  for (const [key, value] of Object.entries(options)) {
    if (value === undefined) delete field[key];
    else field[key] = value;
  }
}
function removeField(d: Declarations, path: string): void {
  const [entity, field] = path.split('.') as [string, string];
  fieldOf(d, path);
  delete d[entity]!.fields[field];
}

const P1 = '10000000-0000-4000-8000-000000000001';
const P2 = '10000000-0000-4000-8000-000000000002';
const T1 = '20000000-0000-4000-8000-000000000001';
const T2 = '20000000-0000-4000-8000-000000000002';
const C1 = '30000000-0000-4000-8000-000000000001';
const C2 = '30000000-0000-4000-8000-000000000002';

/** Rows inserted into A before migrating; keys that A does not declare are left out. */
const SEED: Record<string, Record<string, unknown>[]> = {
  projects: [
    { id: P1, name: 'Apollo', status: 'active', budget: 7.25, notes: null, owner: null },
    { id: P2, name: 'Zephyr', status: 'archived', budget: 42, notes: 'windy', owner: P1 },
  ],
  tasks: [
    {
      id: T1,
      project: P1,
      title: 'Launch rocket',
      done: true,
      estimate: 42,
      payload: '{"a": [1, 2]}',
      due: '2024-05-01',
      rank: 7,
      meta: '{"tags": ["x"], "n": 1.5}',
      seen: '2024-05-01T10:30:00Z',
    },
    {
      id: T2,
      project: P2,
      title: 'Land softly',
      done: false,
      estimate: 7.25,
      payload: '"hi"',
      due: null,
      rank: null,
      meta: null,
      seen: null,
    },
  ],
  countries: [
    { id: C1, code: 'fr', name: 'France', population: 68_000_000 },
    { id: C2, code: 'de', name: null, population: null },
  ],
};

interface Case {
  readonly name: string;
  /** Turns base() into declaration A (default: A is base()). */
  readonly from?: (d: Declarations) => void;
  /** Turns a copy of A into declaration B. */
  readonly to: (d: Declarations) => void;
  /** The destructive changes the plan must list, exactly: `entity` or `entity.field`. */
  readonly destructive?: readonly string[];
  /** How the value of a retyped `entity.field` converts (as read back through to_jsonb). */
  readonly convert?: Readonly<Record<string, (value: unknown) => unknown>>;
  /** B differs from A in nothing the tables show: the plans must be empty. */
  readonly noDdl?: boolean;
  /** A planner bug (see the top of the file) makes this case fail on every driver. */
}

const round = (value: unknown) => (value === null ? null : Math.round(value as number));

const CASES: readonly Case[] = [
  { name: 'identical declarations', to: () => {}, noDdl: true },
  {
    name: 'a feature added and fields reordered (no DDL)',
    to: (d) => {
      d.projects!.feature = 'premium';
      d.tasks!.fields = Object.fromEntries(Object.entries(d.tasks!.fields).reverse());
    },
    noDdl: true,
  },
  {
    name: 'optional fields added',
    to: (d) => {
      setField(d, 'projects.code', { type: 'text' });
      setField(d, 'tasks.started', { type: 'timestamp' });
      setField(d, 'tasks.extra', { type: 'json' });
      setField(d, 'countries.capital', { type: 'text' });
    },
  },
  {
    name: 'fields added with defaults, maxLength, min, max and enum values',
    to: (d) => {
      setField(d, 'projects.priority', { type: 'integer', default: 3, min: 1, max: 5 });
      setField(d, 'projects.external', { type: 'uuid', default: 'a0000000-0000-4000-8000-00000000000a' });
      setField(d, 'tasks.label', { type: 'text', default: 'none', maxLength: 20 });
      setField(d, 'tasks.kind', { type: 'enum', values: ['bug', 'feature', 'chore'], default: 'feature' });
      setField(d, 'tasks.weight', { type: 'number', required: true, default: 1.5, min: 0, max: 10 });
      setField(d, 'tasks.starts', { type: 'date', default: '2025-01-01' });
      setField(d, 'tasks.flag', { type: 'boolean', required: true, default: true });
      setField(d, 'tasks.severity', { type: 'enum', values: ['low', 'high'] });
    },
  },
  {
    name: 'indexed and unique fields added',
    to: (d) => {
      setField(d, 'tasks.started', { type: 'date', index: true });
      setField(d, 'projects.slug', { type: 'text', unique: true });
      setField(d, 'projects.code', { type: 'text', unique: true, index: true, maxLength: 8 });
    },
  },
  {
    name: 'fields removed',
    to: (d) => {
      removeField(d, 'projects.notes');
      removeField(d, 'projects.budget');
      removeField(d, 'tasks.rank');
      removeField(d, 'tasks.title');
    },
    destructive: ['projects.notes', 'projects.budget', 'tasks.rank', 'tasks.title'],
  },
  {
    name: 'a field renamed (dropped and added)',
    to: (d) => {
      removeField(d, 'projects.notes');
      setField(d, 'projects.remarks', { type: 'text' });
    },
    destructive: ['projects.notes'],
  },
  {
    name: 'number fields retyped to integer (with default, min and index)',
    from: (d) => {
      setField(d, 'projects.budget', { type: 'number', min: 0, default: 2.5, index: true });
    },
    to: (d) => {
      setField(d, 'projects.budget', { type: 'integer', min: 0, default: 3, index: true });
      setField(d, 'tasks.estimate', { type: 'integer' });
    },
    destructive: ['projects.budget', 'tasks.estimate'],
    convert: { 'projects.budget': round, 'tasks.estimate': round },
  },
  {
    name: 'text retyped to json, integer to text (and searched)',
    from: (d) => {
      setField(d, 'tasks.payload', { type: 'text', maxLength: 200, index: true });
    },
    to: (d) => {
      setField(d, 'tasks.payload', { type: 'json' });
      setField(d, 'tasks.rank', { type: 'text', index: true, search: true });
    },
    destructive: ['tasks.payload', 'tasks.rank'],
    convert: {
      'tasks.payload': (value) => (value === null ? null : JSON.parse(value as string)),
      'tasks.rank': (value) => (value === null ? null : String(value)),
    },
  },
  {
    name: 'required fields made optional',
    from: (d) => {
      patch(d, 'tasks.done', { required: true });
    },
    to: (d) => {
      patch(d, 'projects.name', { required: undefined });
      patch(d, 'tasks.project', { required: undefined });
      patch(d, 'tasks.title', { required: undefined });
      patch(d, 'tasks.done', { required: undefined });
      patch(d, 'countries.code', { required: undefined });
    },
  },
  {
    name: 'optional fields made required with a default (NULL rows take it)',
    to: (d) => {
      patch(d, 'projects.notes', { required: true, default: 'n/a' });
      patch(d, 'tasks.rank', { required: true, default: 0 });
      patch(d, 'tasks.due', { required: true, default: '2000-01-01' });
      patch(d, 'tasks.done', { required: true });
    },
  },
  {
    name: 'defaults changed and removed',
    to: (d) => {
      patch(d, 'tasks.done', { default: true });
      patch(d, 'projects.status', { default: undefined });
      patch(d, 'tasks.due', { default: '2030-12-31' });
      patch(d, 'projects.budget', { default: 1.5 });
      patch(d, 'countries.population', { default: 0 });
    },
  },
  {
    name: 'enum values changed, text made enum and enum made text',
    to: (d) => {
      patch(d, 'projects.status', { values: ['archived', 'active', 'paused'], default: 'paused' });
      setField(d, 'projects.notes', { type: 'enum', values: ['windy', 'calm'] });
      setField(d, 'tasks.payload', { type: 'enum', values: ['{"a": [1, 2]}', '"hi"'] });
    },
  },
  {
    name: 'unique added and removed',
    to: (d) => {
      patch(d, 'projects.name', { unique: undefined, index: true });
      patch(d, 'tasks.title', { unique: true });
      patch(d, 'projects.owner', { unique: true });
      patch(d, 'tasks.rank', { unique: true });
    },
  },
  {
    name: 'indexes added and removed',
    to: (d) => {
      patch(d, 'tasks.rank', { index: undefined });
      patch(d, 'tasks.due', { index: true });
      patch(d, 'projects.budget', { index: true });
      patch(d, 'projects.name', { index: true });
      patch(d, 'countries.name', { index: true });
    },
  },
  {
    name: 'checks changed (maxLength, min, max)',
    to: (d) => {
      patch(d, 'projects.name', { maxLength: 150 });
      patch(d, 'projects.budget', { min: -5, max: 1_000_000 });
      patch(d, 'tasks.title', { maxLength: 500 });
      patch(d, 'tasks.rank', { min: 1 });
    },
  },
  {
    name: 'search fields added',
    from: (d) => {
      patch(d, 'projects.name', { search: undefined });
      patch(d, 'tasks.title', { search: undefined });
    },
    to: (d) => {
      patch(d, 'projects.name', { search: true });
      patch(d, 'tasks.title', { search: true });
      patch(d, 'tasks.payload', { search: true });
    },
  },
  {
    name: 'search fields changed',
    to: (d) => {
      patch(d, 'projects.notes', { search: true });
      patch(d, 'tasks.title', { search: undefined });
      patch(d, 'tasks.payload', { search: true });
    },
  },
  {
    name: 'search fields removed',
    to: (d) => {
      patch(d, 'projects.name', { search: undefined });
      patch(d, 'tasks.title', { search: undefined });
    },
  },
  {
    name: 'a search field dropped',
    from: (d) => {
      patch(d, 'tasks.payload', { search: true });
    },
    to: (d) => {
      removeField(d, 'tasks.payload');
      removeField(d, 'projects.name');
    },
    destructive: ['tasks.payload', 'projects.name'],
  },
  {
    name: 'a new entity referencing existing ones',
    to: (d) => {
      d.comments = {
        scope: 'tenant',
        fields: {
          task: { type: 'ref', to: 'tasks', required: true, onDelete: 'cascade' },
          project: { type: 'ref', to: 'projects', onDelete: 'set-null' },
          body: { type: 'text', required: true, search: true, maxLength: 2000 },
          author: { type: 'text', index: true },
          score: { type: 'integer', default: 0, min: 0 },
        },
      };
    },
  },
  {
    name: 'refs added to existing entities',
    to: (d) => {
      setField(d, 'projects.parent', { type: 'ref', to: 'projects', onDelete: 'set-null' });
      setField(d, 'tasks.blocker', { type: 'ref', to: 'tasks' });
      setField(d, 'tasks.origin', { type: 'ref', to: 'projects', unique: true, onDelete: 'cascade' });
    },
  },
  {
    name: 'a uuid made a ref, and a ref made a uuid',
    to: (d) => {
      setField(d, 'projects.owner', { type: 'ref', to: 'projects', onDelete: 'cascade' });
      setField(d, 'tasks.project', { type: 'uuid', required: true });
    },
  },
  {
    name: 'ref onDelete changed',
    from: (d) => {
      setField(d, 'tasks.blocker', { type: 'ref', to: 'tasks', onDelete: 'set-null' });
    },
    to: (d) => {
      patch(d, 'tasks.project', { onDelete: 'restrict' });
      patch(d, 'tasks.blocker', { onDelete: 'cascade' });
    },
  },
  {
    name: 'an entity removed together with the ref that pointed to it',
    to: (d) => {
      delete d.projects;
      removeField(d, 'tasks.project');
    },
    destructive: ['projects', 'tasks.project'],
  },
  {
    name: 'an entity with a ref removed',
    to: (d) => {
      delete d.tasks;
    },
    destructive: ['tasks'],
  },
  {
    name: 'two entities added that reference each other',
    to: (d) => {
      d.teams = {
        scope: 'tenant',
        fields: {
          name: { type: 'text', required: true, unique: true },
          lead: { type: 'ref', to: 'people', onDelete: 'set-null' },
        },
      };
      d.people = {
        scope: 'tenant',
        fields: {
          name: { type: 'text', required: true, search: true },
          team: { type: 'ref', to: 'teams', onDelete: 'cascade' },
        },
      };
      setField(d, 'tasks.team', { type: 'ref', to: 'teams', onDelete: 'set-null' });
    },
  },
  {
    name: 'a shared entity added',
    to: (d) => {
      d.currencies = {
        scope: 'shared',
        fields: {
          code: { type: 'text', required: true, unique: true, maxLength: 3 },
          rate: { type: 'number', min: 0 },
          symbol: { type: 'text', index: true },
          active: { type: 'boolean', default: true },
        },
      };
    },
  },
  {
    name: 'a shared entity changed',
    to: (d) => {
      patch(d, 'countries.code', { maxLength: 2 });
      patch(d, 'countries.name', { unique: true });
      setField(d, 'countries.continent', { type: 'enum', values: ['europe', 'asia'], default: 'europe' });
      setField(d, 'countries.area', { type: 'number', min: 0, index: true });
      removeField(d, 'countries.population');
    },
    destructive: ['countries.population'],
  },
  {
    name: 'a shared field retyped',
    to: (d) => {
      setField(d, 'countries.population', { type: 'number', index: true });
    },
    destructive: ['countries.population'],
    convert: { 'countries.population': (value) => value },
  },
  {
    name: 'a shared field made required with a default',
    to: (d) => {
      patch(d, 'countries.name', { required: true, default: 'unknown' });
    },
  },
  {
    name: 'a shared entity removed',
    to: (d) => {
      delete d.countries;
    },
    destructive: ['countries'],
  },
  {
    name: 'many changes at once',
    to: (d) => {
      removeField(d, 'projects.notes');
      patch(d, 'projects.name', { search: undefined, unique: undefined, index: true });
      patch(d, 'projects.status', { values: ['active', 'archived', 'paused'], default: 'paused' });
      setField(d, 'tasks.estimate', { type: 'integer', min: 0 });
      patch(d, 'tasks.title', { unique: true, maxLength: 100 });
      patch(d, 'tasks.rank', { required: true, default: 1, index: undefined });
      patch(d, 'tasks.payload', { search: true });
      setField(d, 'tasks.parent', { type: 'ref', to: 'tasks', onDelete: 'cascade' });
      d.comments = {
        scope: 'tenant',
        fields: {
          task: { type: 'ref', to: 'tasks', required: true, onDelete: 'cascade' },
          body: { type: 'text', required: true, search: true },
        },
      };
      setField(d, 'countries.iso3', { type: 'text', unique: true, maxLength: 3 });
    },
    destructive: ['projects.notes', 'tasks.estimate'],
    convert: { 'tasks.estimate': round },
  },
];

/** The declarations of a case, normalised. */
function declarations(c: Case): { a: readonly Entity[]; b: readonly Entity[] } {
  const a = base();
  c.from?.(a);
  const b = structuredClone(a);
  c.to(b);
  return { a: normaliseEntities(a), b: normaliseEntities(b) };
}

const ofScope = (entities: readonly Entity[], scope: 'tenant' | 'shared') =>
  entities.filter((entity) => entity.scope === scope);

const describeDestructive = (plan: MigrationPlan) =>
  plan.destructive.map((change) => (change.field ? `${change.entity}.${change.field}` : change.entity));

describe('planMigration: plans, destructive changes and problems', () => {
  it.each(CASES.map((c) => [c.name, c] as const))('%s: lists exactly its destructive changes', (_, c) => {
    const { a, b } = declarations(c);
    const change = planEntityChange(a, b);
    const listed = [...describeDestructive(change.tenant), ...describeDestructive(change.shared)];
    expect(listed.sort()).toEqual([...(c.destructive ?? [])].sort());
    for (const item of [...change.tenant.destructive, ...change.shared.destructive]) {
      expect(item.change).toContain(item.field ? `${item.entity}.${item.field}` : item.entity);
    }
    expect([...change.tenant.problems, ...change.shared.problems]).toEqual([]);
    expect(change.tenant.empty && change.shared.empty).toBe(c.noDdl === true);
    for (const plan of [change.tenant, change.shared]) {
      const target = { schema: 'x', runtimeRole: RUNTIME_ROLE };
      const statements = plan.statements(target);
      expect([statements.length > 0, plan.changes.length > 0]).toEqual([!plan.empty, !plan.empty]);
      // planEntityChange is planMigration per scope; plans are pure (same statements every time).
      const alone = planMigration(a, b, plan.scope);
      expect([alone.statements(target), alone.changes, alone.destructive]).toEqual([
        statements,
        plan.changes,
        plan.destructive,
      ]);
    }
    // Re-planning the target against itself finds nothing to do.
    const again = planEntityChange(b, b);
    expect([again.tenant.empty, again.shared.empty]).toEqual([true, true]);
    expect(again.tenant.statements({ schema: 'x', runtimeRole: RUNTIME_ROLE })).toEqual([]);
    expect(again.shared.statements({ schema: 'x', runtimeRole: RUNTIME_ROLE })).toEqual([]);
  });

  it('an identical declaration gives empty plans with no statements, changes or findings', () => {
    const entities = normaliseEntities(base());
    for (const plan of Object.values(planEntityChange(entities, normaliseEntities(base())))) {
      expect(plan.empty).toBe(true);
      expect(plan.statements({ schema: 'app', runtimeRole: RUNTIME_ROLE })).toEqual([]);
      expect([plan.changes, plan.destructive, plan.problems]).toEqual([[], [], []]);
    }
  });

  it('from nothing, every entity of the scope is created and nothing is destructive', () => {
    const entities = normaliseEntities(base());
    const change = planEntityChange([], entities);
    expect(change.tenant.changes).toEqual(['create entity projects', 'create entity tasks']);
    expect(change.shared.changes).toEqual(['create entity countries']);
    expect([change.tenant.destructive, change.shared.destructive]).toEqual([[], []]);
  });

  it('a required field added without a default is a problem naming entity and field', () => {
    const a = base();
    const b = structuredClone(a);
    setField(b, 'projects.leader', { type: 'text', required: true });
    setField(b, 'countries.capital', { type: 'text', required: true, maxLength: 50 });
    const change = planEntityChange(normaliseEntities(a), normaliseEntities(b));
    expect(change.tenant.problems).toEqual([
      { entity: 'projects', field: 'leader', message: expect.stringContaining('"projects.leader"') },
    ]);
    expect(change.shared.problems).toEqual([
      { entity: 'countries', field: 'capital', message: expect.stringContaining('"countries.capital"') },
    ]);
    expect([change.tenant.destructive, change.shared.destructive]).toEqual([[], []]);
    // With a default, or optional, the same field is fine.
    setField(b, 'projects.leader', { type: 'text', required: true, default: 'nobody' });
    setField(b, 'countries.capital', { type: 'text', maxLength: 50 });
    const fixed = planEntityChange(normaliseEntities(a), normaliseEntities(b));
    expect([fixed.tenant.problems, fixed.shared.problems]).toEqual([[], []]);
  });

  it('a scope change (tenant <-> shared) is a problem naming the entity, in one plan only', () => {
    const a = base();
    a.labels = { scope: 'tenant', fields: { text: { type: 'text' } } };
    const b = structuredClone(a);
    b.labels!.scope = 'shared';
    b.countries!.scope = 'tenant';
    const change = planEntityChange(normaliseEntities(a), normaliseEntities(b));
    expect(change.tenant.problems).toEqual([
      { entity: 'labels', field: undefined, message: expect.stringMatching(/"labels".*tenant.*shared/) },
    ]);
    expect(change.shared.problems).toEqual([
      {
        entity: 'countries',
        field: undefined,
        message: expect.stringMatching(/"countries".*shared.*tenant/),
      },
    ]);
    // Nothing is dropped or created for them.
    expect([change.tenant.destructive, change.shared.destructive]).toEqual([[], []]);
    expect([change.tenant.empty, change.shared.empty]).toEqual([true, true]);
  });

  it('every statement of a plan is one SQL command', () => {
    const a = normaliseEntities(base());
    const b = base();
    b.currencies = { scope: 'shared', fields: { code: { type: 'text' } } };
    b.comments = { scope: 'tenant', fields: { body: { type: 'text' } } };
    const change = planEntityChange(a, normaliseEntities(b));
    const statements = [
      ...change.tenant.statements({ schema: 'app', runtimeRole: RUNTIME_ROLE }),
      ...change.shared.statements({ schema: 'shared', runtimeRole: RUNTIME_ROLE }),
    ];
    expect(statements.filter((statement) => statement.includes(';'))).toEqual([]);
  });
});

interface Catalogue {
  readonly tables: Record<string, unknown>[];
  readonly columns: Record<string, unknown>[];
  readonly constraints: Record<string, unknown>[];
  readonly indexes: Record<string, unknown>[];
  readonly policies: Record<string, unknown>[];
  readonly grants: Record<string, unknown>[];
}

const CATALOGUE_QUERIES: Record<keyof Catalogue, string> = {
  tables: `SELECT n.nspname AS schema, c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') ORDER BY 2`,
  columns: `SELECT n.nspname AS schema, c.relname AS table, a.attname AS column,
                   format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
                   a.attgenerated::text AS generated_kind,
                   CASE WHEN a.attgenerated = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS default,
                   CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') AND a.attnum > 0
               AND NOT a.attisdropped
             ORDER BY 2, 3`,
  constraints: `SELECT n.nspname AS schema, c.relname AS table, k.conname AS name, k.contype::text AS kind,
                       pg_get_constraintdef(k.oid) AS definition, k.convalidated AS validated
                  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = ANY($1::text[]) ORDER BY 2, 3`,
  indexes: `SELECT schemaname AS schema, tablename AS table, indexname AS name, indexdef AS definition
              FROM pg_indexes WHERE schemaname = ANY($1::text[]) ORDER BY 2, 3`,
  policies: `SELECT schemaname AS schema, tablename AS table, policyname AS name, permissive,
                    roles::text[] AS roles, cmd, qual, with_check AS check
               FROM pg_policies WHERE schemaname = ANY($1::text[]) ORDER BY 2, 3`,
  grants: `SELECT n.nspname AS schema, c.relname AS table, coalesce(r.rolname, 'PUBLIC') AS grantee,
                  a.privilege_type AS privilege, a.is_grantable AS grantable
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL aclexplode(c.relacl) a
             LEFT JOIN pg_roles r ON r.oid = a.grantee
            WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') ORDER BY 2, 3, 4`,
};

/**
 * What the catalogue says about the tables of each schema, the schema's own name replaced by
 * `S` (foreign keys and index definitions name it).
 */
async function catalogues(db: Queryable, schemas: readonly string[]): Promise<Map<string, Catalogue>> {
  const result = new Map<string, Record<string, Record<string, unknown>[]>>(
    schemas.map((schema) => [schema, {}]),
  );
  for (const [part, sql] of Object.entries(CATALOGUE_QUERIES)) {
    for (const schema of schemas) result.get(schema)![part] = [];
    const { rows } = await db.query(sql, [schemas]);
    for (const { schema, ...row } of rows) {
      const pattern = new RegExp(`\\b${schema as string}\\b`, 'g');
      result.get(schema as string)![part]!.push(JSON.parse(JSON.stringify(row).replace(pattern, 'S')));
    }
  }
  return result as unknown as Map<string, Catalogue>;
}

/** Inside a transaction: the tenant whose rows the statements see (RLS is forced on tenant tables). */
const asTenant = (tx: Queryable) => tx.query("SELECT set_config('tenantry.tenant_id', $1, true)", [TENANT]);

async function seed(tx: Queryable, schema: string, entity: Entity): Promise<void> {
  for (const row of SEED[entity.name] ?? []) {
    const values = new Map<string, unknown>();
    if (entity.scope === 'tenant') values.set('tenant_id', TENANT);
    values.set('id', row.id);
    for (const field of entity.fields) {
      const value = row[field.name];
      // A field with a default gets it when the seed has no value.
      if (value === undefined || (value === null && field.default !== undefined)) continue;
      values.set(field.name, value);
    }
    const columns = [...values.keys()].map((name) => `"${name}"`).join(', ');
    const placeholders = [...values.keys()].map((_, i) => `$${i + 1}`).join(', ');
    await tx.query(`INSERT INTO "${schema}"."${entity.name}" (${columns}) VALUES (${placeholders})`, [
      ...values.values(),
    ]);
  }
}

type Rows = Record<string, unknown>[];

/** Every row of an entity's table as JSON (to_jsonb: the same values on both drivers), by id. */
async function readRows(tx: Queryable, schema: string, entity: string): Promise<Rows> {
  const { rows } = await tx.query<{ row: Record<string, unknown> }>(
    `SELECT to_jsonb(t) - '_search' AS row FROM "${schema}"."${entity}" t ORDER BY t.id`,
  );
  return rows.map((row) => row.row);
}

/** The rows migrating must leave: kept values unchanged, converted ones converted, defaults filled. */
function expectedRows(before: Rows, old: Entity | undefined, next: Entity, c: Case): Rows {
  return before.map((row) => {
    const expected: Record<string, unknown> = {};
    for (const column of SYSTEM_COLUMNS) if (column in row) expected[column] = row[column];
    for (const field of next.fields) {
      const previous = old && fieldByName(old, field.name);
      let value: unknown;
      if (!previous) value = field.default ?? null;
      else if (FIELD_TYPES[previous.type] !== FIELD_TYPES[field.type]) {
        const convert = c.convert?.[`${next.name}.${field.name}`];
        if (!convert) throw new Error(`case ${c.name}: no conversion for ${next.name}.${field.name}`);
        value = convert(row[field.name]);
      } else value = row[field.name];
      if (value === null && field.required && field.default !== undefined) value = field.default;
      expected[field.name] = value;
    }
    return expected;
  });
}

type Mutation = (statements: string[], scope: 'tenant' | 'shared', schema: string) => string[];

for (const driver of DRIVERS) {
  // Cases use schemas of their own: on PostgreSQL they run concurrently, for speed. PGlite is one
  // in-process session whose work blocks the event loop, so its suite runs alone and in order.
  const suite = driver === 'postgres' ? describe.concurrent : describe;
  suite(`planMigration on ${driver}: migrating A gives the catalogue of a fresh B`, () => {
    let db: Database;
    let drop: (() => Promise<void>) | undefined;
    let counter = 0;

    beforeAll(async () => {
      if (driver === 'postgres') {
        const database = await createDatabase();
        // Speed only: this throwaway database need not flush every DDL transaction to disk.
        await withServer((client) =>
          client.query(`ALTER DATABASE ${database.name} SET synchronous_commit = off`),
        );
        db = await openPostgres({ url: database.url, maxConnections: 4 });
        drop = database.drop;
      } else {
        db = await openPglite();
      }
      await ensureRuntimeRole(db.owner, RUNTIME_ROLE);
    });
    afterAll(async () => {
      await db?.close();
      await drop?.();
    });

    const ddl = (entities: readonly Entity[], tenantSchema: string, sharedSchema: string) => [
      ...tenantTablesDdl(entities, { schema: tenantSchema, runtimeRole: RUNTIME_ROLE }),
      ...sharedTablesDdl(entities, { schema: sharedSchema, runtimeRole: RUNTIME_ROLE }),
    ];

    /**
     * Builds A (schemas ta, sa) and seeds it, builds B fresh (tb, sb), migrates A to B in one
     * transaction (optionally with the plan mutated, to show that the checks notice) and compares.
     */
    async function runCase(c: Case, mutation?: Mutation): Promise<void> {
      const n = ++counter;
      const schemas = { ta: `m${n}_ta`, tb: `m${n}_tb`, sa: `m${n}_sa`, sb: `m${n}_sb` };
      const { a, b } = declarations(c);
      const placeA = (entity: Entity) => (entity.scope === 'tenant' ? schemas.ta : schemas.sa);
      try {
        const before = await db.owner.transaction(async (tx) => {
          for (const statement of ddl(a, schemas.ta, schemas.sa)) await tx.query(statement);
          for (const statement of ddl(b, schemas.tb, schemas.sb)) await tx.query(statement);
          await asTenant(tx);
          const rows = new Map<string, Rows>();
          for (const entity of a) {
            await seed(tx, placeA(entity), entity);
            rows.set(entity.name, await readRows(tx, placeA(entity), entity.name));
          }
          return rows;
        });
        for (const entity of a)
          expect(before.get(entity.name), 'seeded').toHaveLength(SEED[entity.name]!.length);

        const change = planEntityChange(a, b);
        expect([...change.tenant.problems, ...change.shared.problems]).toEqual([]);
        let tenantStatements = change.tenant.statements({ schema: schemas.ta, runtimeRole: RUNTIME_ROLE });
        let sharedStatements = change.shared.statements({ schema: schemas.sa, runtimeRole: RUNTIME_ROLE });
        expect(tenantStatements.length + sharedStatements.length === 0, 'plan empty').toBe(c.noDdl === true);
        if (mutation) {
          tenantStatements = mutation(tenantStatements, 'tenant', schemas.ta);
          sharedStatements = mutation(sharedStatements, 'shared', schemas.sa);
        }
        await db.owner.transaction(async (tx) => {
          for (const statement of [...tenantStatements, ...sharedStatements]) await tx.query(statement);
        });

        const found = await catalogues(db.owner, Object.values(schemas));
        const tables = await readTables(db.owner, [schemas.ta, schemas.sa]);
        for (const [migrated, fresh, scope] of [
          [schemas.ta, schemas.tb, 'tenant'],
          [schemas.sa, schemas.sb, 'shared'],
        ] as const) {
          const actual = found.get(migrated)!;
          const expected = found.get(fresh)!;
          expect(expected.tables.length, `${scope} tables of B`).toBe(ofScope(b, scope).length);
          expect(actual.tables, `${scope} tables and RLS flags`).toEqual(expected.tables);
          expect(actual.columns, `${scope} columns`).toEqual(expected.columns);
          expect(actual.constraints, `${scope} constraints`).toEqual(expected.constraints);
          expect(actual.indexes, `${scope} indexes`).toEqual(expected.indexes);
          expect(actual.policies, `${scope} policies`).toEqual(expected.policies);
          expect(actual.grants, `${scope} grants`).toEqual(expected.grants);
          expect(
            diffTables(ofScope(b, scope), tables.get(migrated)!, migrated),
            `${scope} diffTables`,
          ).toEqual([]);
        }

        await db.owner.transaction(async (tx) => {
          await asTenant(tx);
          for (const entity of b) {
            const place = entity.scope === 'tenant' ? schemas.ta : schemas.sa;
            const old = a.find((candidate) => candidate.name === entity.name);
            const after = await readRows(tx, place, entity.name);
            const expected = expectedRows(before.get(entity.name) ?? [], old, entity, c);
            expect(after, `rows of ${entity.name}`).toEqual(expected);
            const search = entity.fields.filter((field) => field.search);
            if (search.length === 0 || after.length === 0) continue;
            // The search document of every row, recomputed from the values it should index.
            const documents = after.map((row) =>
              search.map((field) => (row[field.name] as string | null) ?? '').join(' '),
            );
            const { rows } = await tx.query<{ actual: string; expected: string }>(
              `SELECT t._search::text AS actual, to_tsvector('simple', d.document)::text AS expected
               FROM unnest($1::uuid[], $2::text[]) AS d(id, document)
               JOIN "${place}"."${entity.name}" t ON t.id = d.id ORDER BY t.id`,
              [after.map((row) => row.id), documents],
            );
            expect(rows.length).toBe(after.length);
            for (const row of rows) expect(row.actual, `search of ${entity.name}`).toBe(row.expected);
          }
        });
      } finally {
        await db.owner.query(`DROP SCHEMA IF EXISTS ${Object.values(schemas).join(', ')} CASCADE`);
      }
    }

    for (const c of CASES) {
      it(c.name, () => runCase(c));
    }

    const byName = (name: string): Case => {
      const found = CASES.find((c) => c.name === name);
      if (!found) throw new Error(`no case ${name}`);
      return found;
    };
    const without =
      (pattern: RegExp): Mutation =>
      (statements) =>
        statements.filter((statement) => !pattern.test(statement));
    const plus =
      (extra: (schema: string) => string, scope: 'tenant' | 'shared' = 'tenant'): Mutation =>
      (statements, s, schema) =>
        s === scope ? [...statements, extra(schema)] : statements;

    /** Each check notices what a careless planner would get wrong: none of them is vacuous. */
    const MUTATIONS: readonly { what: string; case: string; mutation: Mutation; fails: RegExp }[] = [
      {
        what: 'an index not created',
        case: 'indexes added and removed',
        mutation: without(/CREATE INDEX/),
        fails: /tenant indexes/,
      },
      {
        what: 'an index not dropped',
        case: 'indexes added and removed',
        mutation: without(/DROP INDEX/),
        fails: /tenant indexes/,
      },
      {
        what: 'a unique constraint not added',
        case: 'unique added and removed',
        mutation: without(/UNIQUE/),
        fails: /tenant constraints/,
      },
      {
        what: 'a check not rebuilt',
        case: 'checks changed (maxLength, min, max)',
        mutation: without(/CHECK/),
        fails: /tenant constraints/,
      },
      {
        what: 'a default not set',
        case: 'defaults changed and removed',
        mutation: without(/SET DEFAULT/),
        fails: /tenant columns/,
      },
      {
        what: 'a NOT NULL not dropped',
        case: 'required fields made optional',
        mutation: without(/DROP NOT NULL/),
        fails: /tenant columns/,
      },
      {
        what: 'the search column not rebuilt',
        case: 'search fields changed',
        mutation: without(/_search/),
        fails: /tenant columns/,
      },
      {
        what: 'a foreign key not replaced',
        case: 'ref onDelete changed',
        mutation: without(/FOREIGN KEY|DROP CONSTRAINT/),
        fails: /tenant constraints/,
      },
      {
        what: 'row-level security left unforced',
        case: 'optional fields made required with a default (NULL rows take it)',
        mutation: without(/^ALTER TABLE \S+ FORCE ROW LEVEL SECURITY$/),
        fails: /tenant tables and RLS flags/,
      },
      {
        what: 'a policy dropped',
        case: 'optional fields added',
        mutation: plus((schema) => `DROP POLICY tenant_isolation ON ${schema}.projects`),
        fails: /tenant policies/,
      },
      {
        what: 'a policy widened',
        case: 'optional fields added',
        mutation: plus((schema) => `ALTER POLICY tenant_rows ON ${schema}.tasks USING (true)`),
        fails: /tenant policies/,
      },
      {
        what: 'a grant revoked',
        case: 'optional fields added',
        mutation: plus((schema) => `REVOKE DELETE ON ${schema}.tasks FROM ${RUNTIME_ROLE}`),
        fails: /tenant grants/,
      },
      {
        what: 'a shared grant widened',
        case: 'a shared entity changed',
        mutation: plus((schema) => `GRANT INSERT ON ${schema}.countries TO ${RUNTIME_ROLE}`, 'shared'),
        fails: /shared grants/,
      },
      {
        what: 'a column left over',
        case: 'fields removed',
        mutation: without(/DROP COLUMN "notes"/),
        fails: /tenant columns/,
      },
      {
        what: 'a value changed',
        case: 'optional fields added',
        mutation: plus((schema) => `UPDATE ${schema}.projects SET notes = 'changed'`),
        fails: /rows of projects/,
      },
      {
        what: 'a retyped value converted wrongly',
        case: 'number fields retyped to integer (with default, min and index)',
        mutation: plus((schema) => `UPDATE ${schema}.tasks SET estimate = estimate + 1`),
        fails: /rows of tasks/,
      },
      {
        what: 'NULLs not given the default',
        case: 'optional fields made required with a default (NULL rows take it)',
        mutation: (statements) =>
          statements.map((statement) =>
            statement.startsWith('UPDATE') ? statement.replace("'n/a'", "'other'") : statement,
          ),
        fails: /rows of projects/,
      },
    ];

    // The checks are the same on every driver: proving them sensitive once (on PostgreSQL when it
    // runs) keeps the file fast.
    for (const m of MUTATIONS) {
      it.runIf(driver === DRIVERS[DRIVERS.length - 1])(`the comparison notices ${m.what}`, async () => {
        await expect(runCase(byName(m.case), m.mutation)).rejects.toThrow(m.fails);
      });
    }
  });
}
