import { randomInt } from 'node:crypto';
import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestDriver, type TestEnv } from '../helpers/harness.js';
import {
  asTenant,
  createTestTenant,
  Places,
  placeKey,
  type TestTenant,
  tableOf,
} from '../helpers/isolation.js';

/**
 * Random sequences of API calls by several tenants (isolation levels mixed), checked after
 * every step against a model of which rows each tenant owns and against the rows as they lie in
 * the database (read as the owner): no tenant sees, counts, changes or deletes another's rows by
 * any route, filter, sort, search or id guess; no write lands anywhere but in its tenant; no
 * answer carries another tenant's ids, and no error another tenant's values.
 */

/** Sequences per driver: at least 100 (ISOLATION_RUNS may ask for more), and the time they must fit in. */
const RUNS = Math.max(100, Number(process.env.ISOLATION_RUNS ?? 0) || 0);
const TIME_LIMIT_MS = RUNS * 1_200;

const TENANT_LEVELS: Record<TestDriver, readonly IsolationLevel[]> = {
  pglite: ['row', 'row', 'schema', 'schema'],
  postgres: ['row', 'row', 'schema', 'database'],
};

// Values tenants store. None of them can appear in an error message by chance.
const NAMES = ['quasar', 'nebula', 'pulsar', 'zenith', 'vortex', 'photon', 'magnetar', 'nova'] as const;
const WORDS = ['amber', 'cobalt', 'indigo', 'scarlet', 'violet', 'ochre'] as const;
const PREFIXES = ['q', 'ne', 'p', 'ze', 'vo', 'ma', 'no', 'x'] as const;
const STATUSES = ['active', 'archived'] as const;
const PROJECT_SORTS = ['name', '-name', '-created_at', 'updated_at', 'status,-name'] as const;
const TASK_SORTS = ['title', '-done,title', 'created_at', '-updated_at', 'project,-created_at'] as const;

type EntityName = 'projects' | 'tasks';
type Status = (typeof STATUSES)[number];

interface Project {
  readonly id: string;
  readonly name: string;
  readonly status: Status;
}

interface Task {
  readonly id: string;
  readonly project: string;
  readonly title: string;
  readonly done: boolean;
}

/** Which row an operation names: the actor's own, another tenant's, a deleted one, or none. */
interface TargetSpec {
  readonly kind: 'own' | 'other' | 'gone' | 'missing';
  readonly tenant: number;
  readonly pick: number;
  readonly upper: boolean;
  readonly missing: string;
}

type ProjectFilter =
  | { readonly kind: 'all' }
  | { readonly kind: 'name'; readonly name: number }
  | { readonly kind: 'like'; readonly prefix: number }
  | { readonly kind: 'status'; readonly status: Status }
  | { readonly kind: 'id'; readonly target: TargetSpec }
  | { readonly kind: 'ids'; readonly targets: readonly TargetSpec[] }
  | { readonly kind: 'page'; readonly sort: number; readonly limit: number };

type TaskFilter =
  | { readonly kind: 'all' }
  | { readonly kind: 'project'; readonly target: TargetSpec }
  | { readonly kind: 'q'; readonly word: number }
  | { readonly kind: 'like'; readonly word: number }
  | { readonly kind: 'done'; readonly done: boolean }
  | { readonly kind: 'id'; readonly target: TargetSpec }
  | { readonly kind: 'ids'; readonly targets: readonly TargetSpec[] }
  | { readonly kind: 'page'; readonly sort: number; readonly limit: number };

type Op =
  | { readonly op: 'createProject'; readonly actor: number; readonly name: number; readonly status?: Status }
  | { readonly op: 'batchProjects'; readonly actor: number; readonly names: readonly number[] }
  | {
      readonly op: 'createTask';
      readonly actor: number;
      readonly project: TargetSpec;
      readonly words: readonly [number, number];
      readonly done: boolean;
    }
  | {
      readonly op: 'batchTasks';
      readonly actor: number;
      readonly projects: readonly TargetSpec[];
      readonly word: number;
    }
  | { readonly op: 'get'; readonly actor: number; readonly entity: EntityName; readonly target: TargetSpec }
  | {
      readonly op: 'patchProject';
      readonly actor: number;
      readonly target: TargetSpec;
      readonly name?: number;
      readonly status?: Status;
    }
  | {
      readonly op: 'patchTask';
      readonly actor: number;
      readonly target: TargetSpec;
      readonly project?: TargetSpec;
      readonly done?: boolean;
      readonly word?: number;
    }
  | {
      readonly op: 'delete';
      readonly actor: number;
      readonly entity: EntityName;
      readonly target: TargetSpec;
    }
  | { readonly op: 'listProjects'; readonly actor: number; readonly filter: ProjectFilter }
  | { readonly op: 'listTasks'; readonly actor: number; readonly filter: TaskFilter }
  | { readonly op: 'forge'; readonly actor: number; readonly victim: number; readonly how: number };

const target: fc.Arbitrary<TargetSpec> = fc.record({
  kind: fc.constantFrom('own', 'own', 'other', 'other', 'gone', 'missing'),
  tenant: fc.nat(11),
  pick: fc.nat(63),
  upper: fc.boolean(),
  missing: fc.uuid(),
});

function operations(tenants: number): fc.Arbitrary<Op[]> {
  const actor = fc.nat(tenants - 1);
  const name = fc.nat(NAMES.length - 1);
  const word = fc.nat(WORDS.length - 1);
  const status = fc.constantFrom(...STATUSES);
  const page = (sorts: number) =>
    fc.record({
      kind: fc.constant('page' as const),
      sort: fc.nat(sorts - 1),
      limit: fc.integer({ min: 1, max: 3 }),
    });
  const projectFilter: fc.Arbitrary<ProjectFilter> = fc.oneof(
    fc.constant({ kind: 'all' as const }),
    fc.record({ kind: fc.constant('name' as const), name }),
    fc.record({ kind: fc.constant('like' as const), prefix: fc.nat(PREFIXES.length - 1) }),
    fc.record({ kind: fc.constant('status' as const), status }),
    fc.record({ kind: fc.constant('id' as const), target }),
    fc.record({
      kind: fc.constant('ids' as const),
      targets: fc.array(target, { minLength: 1, maxLength: 4 }),
    }),
    page(PROJECT_SORTS.length),
  );
  const taskFilter: fc.Arbitrary<TaskFilter> = fc.oneof(
    fc.constant({ kind: 'all' as const }),
    fc.record({ kind: fc.constant('project' as const), target }),
    fc.record({ kind: fc.constant('q' as const), word }),
    fc.record({ kind: fc.constant('like' as const), word }),
    fc.record({ kind: fc.constant('done' as const), done: fc.boolean() }),
    fc.record({ kind: fc.constant('id' as const), target }),
    fc.record({
      kind: fc.constant('ids' as const),
      targets: fc.array(target, { minLength: 1, maxLength: 4 }),
    }),
    page(TASK_SORTS.length),
  );
  const entity = fc.constantFrom<EntityName>('projects', 'tasks');
  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record(
        { op: fc.constant('createProject' as const), actor, name, status },
        { requiredKeys: ['op', 'actor', 'name'] },
      ),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('batchProjects' as const),
        actor,
        names: fc.array(name, { minLength: 1, maxLength: 4 }),
      }),
    },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('createTask' as const),
        actor,
        project: target,
        words: fc.tuple(word, word),
        done: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('batchTasks' as const),
        actor,
        projects: fc.array(target, { minLength: 1, maxLength: 3 }),
        word,
      }),
    },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('get' as const), actor, entity, target }) },
    {
      weight: 2,
      arbitrary: fc.record(
        { op: fc.constant('patchProject' as const), actor, target, name, status },
        { requiredKeys: ['op', 'actor', 'target'] },
      ),
    },
    {
      weight: 2,
      arbitrary: fc.record(
        { op: fc.constant('patchTask' as const), actor, target, project: target, done: fc.boolean(), word },
        { requiredKeys: ['op', 'actor', 'target'] },
      ),
    },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), actor, entity, target }) },
    {
      weight: 3,
      arbitrary: fc.record({ op: fc.constant('listProjects' as const), actor, filter: projectFilter }),
    },
    { weight: 3, arbitrary: fc.record({ op: fc.constant('listTasks' as const), actor, filter: taskFilter }) },
    {
      weight: 1,
      arbitrary: fc.record({
        op: fc.constant('forge' as const),
        actor,
        victim: fc.nat(tenants - 1),
        how: fc.nat(2),
      }),
    },
  );
  return fc.array(op, { minLength: 1, maxLength: 12, size: 'max' });
}

interface TenantModel {
  readonly projects: Map<string, Project>;
  readonly tasks: Map<string, Task>;
}

interface Resolved {
  /** The id as sent (possibly upper-cased). */
  readonly id: string;
  /** True when the row exists and belongs to the actor: the only case it may be reached. */
  readonly mine: boolean;
}

interface Problem {
  readonly status: number;
  readonly code: string;
  readonly detail: string;
  readonly field?: string;
}

describe.each(DRIVERS)('tenant isolation properties on %s (isolation levels mixed)', (driver) => {
  let env: TestEnv;
  let places: Places;
  const tenants: TestTenant[] = [];
  const models: TenantModel[] = [];
  /** Every row id each tenant ever had, for the "never in another tenant's answer" check. */
  const everIds: Set<string>[] = [];
  /** Ids of deleted rows, of any tenant: guessed again later. */
  const gone: Record<EntityName, string[]> = { projects: [], tasks: [] };
  let steps = 0;
  /** How often each operation got each status: proves the runs reached the interesting cases. */
  const outcomes = new Map<string, number>();
  let current = 'verify';

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    places = new Places(env);
    for (const [index, level] of TENANT_LEVELS[driver].entries()) {
      tenants.push(await createTestTenant(env, `prop-${index}-${level}`, level));
      models.push({ projects: new Map(), tasks: new Map() });
      everIds.push(new Set());
    }
  });
  afterAll(async () => {
    await places?.close();
    await env?.close();
  });

  const others = (actor: number) => tenants.map((_, index) => index).filter((index) => index !== actor);

  function resolve(actor: number, entity: EntityName, spec: TargetSpec): Resolved {
    const rowsOf = (tenant: number) => [...models[tenant]![entity].keys()];
    let id: string | undefined;
    let mine = false;
    if (spec.kind === 'own') {
      const rows = rowsOf(actor);
      id = rows[spec.pick % Math.max(rows.length, 1)];
      mine = id !== undefined;
    } else if (spec.kind === 'other') {
      const candidates = others(actor);
      const rows = rowsOf(candidates[spec.tenant % candidates.length]!);
      id = rows[spec.pick % Math.max(rows.length, 1)];
    } else if (spec.kind === 'gone') {
      id = gone[entity][spec.pick % Math.max(gone[entity].length, 1)];
    }
    id ??= spec.missing;
    return { id: spec.upper ? id.toUpperCase() : id, mine };
  }

  async function call(actor: number, options: InjectOptions): Promise<LightMyRequestResponse> {
    const response = await env.inject({ ...options, headers: asTenant(tenants[actor]!) });
    const outcome = `${current}:${response.statusCode}`;
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    guard(actor, response);
    return response;
  }

  /** What no answer to `actor` may contain, whatever the route and status. */
  function guard(actor: number, response: LightMyRequestResponse): void {
    const body = response.body.toLowerCase();
    for (const other of others(actor)) {
      expect(body, `answer to ${tenants[actor]!.slug} names tenant ${tenants[other]!.slug}`).not.toContain(
        tenants[other]!.id,
      );
      for (const id of everIds[other]!) {
        expect(
          body,
          `answer to ${tenants[actor]!.slug} holds a row id of ${tenants[other]!.slug}`,
        ).not.toContain(id);
      }
    }
    if (response.statusCode < 400) expect(body).not.toContain('tenant_id');
    if (response.statusCode >= 400) {
      const mine = new Set([
        ...[...models[actor]!.projects.values()].map((row) => row.name),
        ...[...models[actor]!.tasks.values()].flatMap((row) => row.title.split(' ')),
      ]);
      for (const other of others(actor)) {
        const values = [
          ...[...models[other]!.projects.values()].map((row) => row.name),
          ...[...models[other]!.tasks.values()].flatMap((row) => row.title.split(' ')),
        ];
        for (const value of values.filter((v) => !mine.has(v))) {
          expect(
            body,
            `error to ${tenants[actor]!.slug} holds a value of ${tenants[other]!.slug}`,
          ).not.toContain(value);
        }
      }
    }
  }

  function expectProblem(response: LightMyRequestResponse, expected: Partial<Problem>): void {
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.json() as Problem, response.body).toMatchObject(expected);
  }

  const notFound = (entity: EntityName) => ({ status: 404, code: 'not_found', detail: `no such ${entity}` });

  const projectView = (row: Record<string, unknown>) => ({ id: row.id, name: row.name, status: row.status });
  const taskView = (row: Record<string, unknown>) => ({
    id: row.id,
    project: row.project,
    title: row.title,
    done: row.done,
  });
  const byId = <T extends { id: unknown }>(rows: T[]) =>
    [...rows].sort((x, y) => String(x.id).localeCompare(String(y.id)));

  function addProject(actor: number, row: Record<string, unknown>): void {
    const project = projectView(row) as Project;
    models[actor]!.projects.set(project.id, project);
    everIds[actor]!.add(project.id);
  }

  function addTask(actor: number, row: Record<string, unknown>): void {
    const task = taskView(row) as Task;
    models[actor]!.tasks.set(task.id, task);
    everIds[actor]!.add(task.id);
  }

  /** Reads every page of a list; checks the page count matches the rows, and returns the items. */
  async function listAll(
    actor: number,
    entity: EntityName,
    query: string,
    limit: number | undefined,
  ): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    let next: string | null = null;
    let pages = 0;
    do {
      const separator = query ? '&' : '';
      const url = `/api/v1/${entity}?${query}${limit ? `${separator}limit=${limit}` : ''}${next ? `&next=${next}` : ''}`;
      const response = await call(actor, { url });
      expect(response.statusCode, `${url}: ${response.body}`).toBe(200);
      const page = response.json() as { items: Record<string, unknown>[]; next: string | null };
      if (limit) expect(page.items.length).toBeLessThanOrEqual(limit);
      items.push(...page.items);
      next = page.next;
      pages += 1;
      // A cursor that never ends (or repeats pages) stops here rather than looping on.
      expect(pages, 'more pages than the tenant has rows').toBeLessThanOrEqual(
        Math.ceil((models[actor]![entity].size + 1) / (limit ?? 50)) + 1,
      );
    } while (next);
    if (limit)
      expect(pages, `pages of ${limit} for ${items.length} rows`).toBe(
        Math.max(1, Math.ceil(items.length / limit)),
      );
    expect(new Set(items.map((item) => item.id)).size, 'a row listed twice').toBe(items.length);
    return items;
  }

  async function step(op: Op): Promise<void> {
    const actor = op.actor;
    const model = models[actor]!;
    switch (op.op) {
      case 'createProject': {
        const name = NAMES[op.name]!;
        const payload = op.status ? { name, status: op.status } : { name };
        const response = await call(actor, { method: 'POST', url: '/api/v1/projects', payload });
        if ([...model.projects.values()].some((row) => row.name === name)) {
          expect(response.statusCode, response.body).toBe(409);
          expectProblem(response, { code: 'conflict', field: 'name' });
        } else {
          expect(response.statusCode, response.body).toBe(201);
          expect(response.json()).toMatchObject({ name, status: op.status ?? 'active' });
          addProject(actor, response.json());
        }
        return;
      }
      case 'batchProjects': {
        const names = op.names.map((index) => NAMES[index]!);
        const response = await call(actor, {
          method: 'POST',
          url: '/api/v1/projects/batch',
          payload: { rows: names.map((name) => ({ name })) },
        });
        const taken = new Set([...model.projects.values()].map((row) => row.name));
        if (new Set(names).size !== names.length || names.some((name) => taken.has(name))) {
          expect(response.statusCode, response.body).toBe(409);
          expectProblem(response, { code: 'conflict' });
        } else {
          expect(response.statusCode, response.body).toBe(201);
          const items = response.json().items as Record<string, unknown>[];
          expect(items.map((item) => item.name)).toEqual(names);
          for (const item of items) addProject(actor, item);
        }
        return;
      }
      case 'createTask': {
        const project = resolve(actor, 'projects', op.project);
        const title = op.words.map((index) => WORDS[index]!).join(' ');
        const response = await call(actor, {
          method: 'POST',
          url: '/api/v1/tasks',
          payload: { project: project.id, title, done: op.done },
        });
        if (project.mine) {
          expect(response.statusCode, response.body).toBe(201);
          expect(response.json()).toMatchObject({ project: project.id.toLowerCase(), title, done: op.done });
          addTask(actor, response.json());
        } else {
          expect(response.statusCode, response.body).toBe(400);
          expectProblem(response, { code: 'validation_failed', field: 'project' });
        }
        return;
      }
      case 'batchTasks': {
        const projects = op.projects.map((spec) => resolve(actor, 'projects', spec));
        const title = `${WORDS[op.word]!} batch`;
        const response = await call(actor, {
          method: 'POST',
          url: '/api/v1/tasks/batch',
          payload: { rows: projects.map((project) => ({ project: project.id, title })) },
        });
        if (projects.every((project) => project.mine)) {
          expect(response.statusCode, response.body).toBe(201);
          for (const item of response.json().items as Record<string, unknown>[]) addTask(actor, item);
        } else {
          expect(response.statusCode, response.body).toBe(400);
          expectProblem(response, { code: 'validation_failed' });
        }
        return;
      }
      case 'get': {
        const row = resolve(actor, op.entity, op.target);
        const response = await call(actor, { url: `/api/v1/${op.entity}/${row.id}` });
        if (row.mine) {
          expect(response.statusCode, response.body).toBe(200);
          const expected =
            op.entity === 'projects'
              ? model.projects.get(row.id.toLowerCase())
              : model.tasks.get(row.id.toLowerCase());
          const view = op.entity === 'projects' ? projectView(response.json()) : taskView(response.json());
          expect(view).toEqual(expected);
        } else {
          expect(response.statusCode, response.body).toBe(404);
          expectProblem(response, notFound(op.entity));
        }
        return;
      }
      case 'patchProject': {
        const row = resolve(actor, 'projects', op.target);
        const payload: Record<string, unknown> = {};
        if (op.name !== undefined) payload.name = NAMES[op.name]!;
        if (op.status !== undefined) payload.status = op.status;
        if (Object.keys(payload).length === 0) payload.status = 'archived';
        const response = await call(actor, { method: 'PATCH', url: `/api/v1/projects/${row.id}`, payload });
        const id = row.id.toLowerCase();
        if (!row.mine) {
          expect(response.statusCode, response.body).toBe(404);
          expectProblem(response, notFound('projects'));
        } else if (
          payload.name !== undefined &&
          [...model.projects.values()].some((other) => other.id !== id && other.name === payload.name)
        ) {
          expect(response.statusCode, response.body).toBe(409);
          expectProblem(response, { code: 'conflict', field: 'name' });
        } else {
          expect(response.statusCode, response.body).toBe(200);
          const updated = { ...model.projects.get(id)!, ...payload } as Project;
          expect(projectView(response.json())).toEqual(updated);
          model.projects.set(id, updated);
        }
        return;
      }
      case 'patchTask': {
        const row = resolve(actor, 'tasks', op.target);
        const project = op.project ? resolve(actor, 'projects', op.project) : undefined;
        const payload: Record<string, unknown> = {};
        if (project) payload.project = project.id;
        if (op.done !== undefined) payload.done = op.done;
        if (op.word !== undefined) payload.title = `${WORDS[op.word]!} patched`;
        if (Object.keys(payload).length === 0) payload.done = true;
        const response = await call(actor, { method: 'PATCH', url: `/api/v1/tasks/${row.id}`, payload });
        const id = row.id.toLowerCase();
        if (!row.mine) {
          expect(response.statusCode, response.body).toBe(404);
          expectProblem(response, notFound('tasks'));
        } else if (project && !project.mine) {
          expect(response.statusCode, response.body).toBe(400);
          expectProblem(response, { code: 'validation_failed', field: 'project' });
        } else {
          expect(response.statusCode, response.body).toBe(200);
          const updated = {
            ...model.tasks.get(id)!,
            ...payload,
            ...(project ? { project: project.id.toLowerCase() } : {}),
          } as Task;
          expect(taskView(response.json())).toEqual(updated);
          model.tasks.set(id, updated);
        }
        return;
      }
      case 'delete': {
        const row = resolve(actor, op.entity, op.target);
        const response = await call(actor, { method: 'DELETE', url: `/api/v1/${op.entity}/${row.id}` });
        const id = row.id.toLowerCase();
        if (!row.mine) {
          expect(response.statusCode, response.body).toBe(404);
          expectProblem(response, notFound(op.entity));
          return;
        }
        expect(response.statusCode, response.body).toBe(204);
        model[op.entity].delete(id);
        gone[op.entity].push(id);
        if (op.entity === 'projects') {
          // onDelete: cascade
          for (const task of [...model.tasks.values()].filter((task) => task.project === id)) {
            model.tasks.delete(task.id);
            gone.tasks.push(task.id);
          }
        }
        return;
      }
      case 'listProjects': {
        const rows = [...model.projects.values()];
        const f = op.filter;
        let query = '';
        let expected = rows;
        let limit: number | undefined = 1000;
        let order: string[] | undefined;
        switch (f.kind) {
          case 'all':
            break;
          case 'name':
            query = `name=${NAMES[f.name]}`;
            expected = rows.filter((row) => row.name === NAMES[f.name]);
            break;
          case 'like':
            query = `name[like]=${PREFIXES[f.prefix]}*`;
            expected = rows.filter((row) => row.name.startsWith(PREFIXES[f.prefix]!));
            break;
          case 'status':
            query = `status=${f.status}`;
            expected = rows.filter((row) => row.status === f.status);
            break;
          case 'id': {
            const row = resolve(actor, 'projects', f.target);
            query = `id=${row.id}`;
            expected = rows.filter((candidate) => row.mine && candidate.id === row.id.toLowerCase());
            break;
          }
          case 'ids': {
            const ids = f.targets.map((spec) => resolve(actor, 'projects', spec));
            query = `id[in]=${ids.map((row) => row.id).join(',')}`;
            const wanted = new Set(ids.filter((row) => row.mine).map((row) => row.id.toLowerCase()));
            expected = rows.filter((row) => wanted.has(row.id));
            break;
          }
          case 'page': {
            const sort = PROJECT_SORTS[f.sort]!;
            query = `sort=${sort}`;
            limit = f.limit;
            if (sort === 'name' || sort === '-name') {
              order = rows.map((row) => row.name).sort();
              if (sort === '-name') order.reverse();
            }
            break;
          }
        }
        const items = await listAll(actor, 'projects', query, limit);
        expect(byId(items.map(projectView)), query).toEqual(byId(expected));
        if (order) expect(items.map((item) => item.name)).toEqual(order);
        return;
      }
      case 'listTasks': {
        const rows = [...model.tasks.values()];
        const f = op.filter;
        let query = '';
        let expected = rows;
        let limit: number | undefined = 1000;
        switch (f.kind) {
          case 'all':
            break;
          case 'project': {
            const project = resolve(actor, 'projects', f.target);
            query = `project=${project.id}`;
            expected = rows.filter((row) => project.mine && row.project === project.id.toLowerCase());
            break;
          }
          case 'q':
            query = `q=${WORDS[f.word]}`;
            expected = rows.filter((row) => row.title.split(' ').includes(WORDS[f.word]!));
            break;
          case 'like':
            query = `title[like]=*${WORDS[f.word]}*`;
            expected = rows.filter((row) => row.title.includes(WORDS[f.word]!));
            break;
          case 'done':
            query = `done=${f.done}`;
            expected = rows.filter((row) => row.done === f.done);
            break;
          case 'id': {
            const row = resolve(actor, 'tasks', f.target);
            query = `id=${row.id}`;
            expected = rows.filter((candidate) => row.mine && candidate.id === row.id.toLowerCase());
            break;
          }
          case 'ids': {
            const ids = f.targets.map((spec) => resolve(actor, 'tasks', spec));
            query = `id[in]=${ids.map((row) => row.id).join(',')}`;
            const wanted = new Set(ids.filter((row) => row.mine).map((row) => row.id.toLowerCase()));
            expected = rows.filter((row) => wanted.has(row.id));
            break;
          }
          case 'page':
            query = `sort=${TASK_SORTS[f.sort]}`;
            limit = f.limit;
            break;
        }
        const items = await listAll(actor, 'tasks', query, limit);
        expect(byId(items.map(taskView)), query).toEqual(byId(expected));
        return;
      }
      case 'forge': {
        const victim = tenants[op.victim]!.id;
        let response: LightMyRequestResponse;
        if (op.how === 0) {
          response = await call(actor, {
            method: 'POST',
            url: '/api/v1/projects',
            payload: { name: 'forged', tenant_id: victim },
          });
        } else if (op.how === 1) {
          response = await call(actor, {
            method: 'POST',
            url: '/api/v1/projects/batch',
            payload: { rows: [{ name: 'forged', tenant_id: victim }] },
          });
        } else {
          const own = [...model.projects.keys()][0] ?? '0190f5c2-6f3d-7a2b-8c4d-0123456789ab';
          response = await call(actor, {
            method: 'PATCH',
            url: `/api/v1/projects/${own}`,
            payload: { tenant_id: victim },
          });
        }
        expect(response.statusCode, response.body).toBe(400);
        expectProblem(response, { code: 'validation_failed' });
        return;
      }
    }
  }

  /** Where the rows lie, read as the owner: exactly the model, each in its own tenant's place. */
  async function groundTruth(): Promise<void> {
    const actual = new Set<string>();
    const locations = new Map<string, TestTenant>();
    for (const tenant of tenants) locations.set(placeKey(tenant.placement), tenant);
    for (const [place, tenant] of locations) {
      const owner = await places.owner(tenant.placement);
      const { rows } = await owner.query<{ e: string; t: string; id: string }>(
        `SELECT 'projects' AS e, tenant_id::text AS t, id::text AS id FROM ${tableOf(tenant.placement, 'projects')}
         UNION ALL SELECT 'tasks', tenant_id::text, id::text FROM ${tableOf(tenant.placement, 'tasks')}`,
      );
      for (const row of rows) actual.add(`${place} ${row.t} ${row.e} ${row.id}`);
    }
    const expected = new Set<string>();
    tenants.forEach((tenant, index) => {
      for (const entity of ['projects', 'tasks'] as const) {
        for (const id of models[index]![entity].keys()) {
          expected.add(`${placeKey(tenant.placement)} ${tenant.id} ${entity} ${id}`);
        }
      }
    });
    expect([...actual].sort()).toEqual([...expected].sort());
  }

  /** After every step: each tenant's full lists are its model, and the database agrees. */
  async function verify(): Promise<void> {
    for (const [index] of tenants.entries()) {
      const projects = await listAll(index, 'projects', '', 1000);
      expect(byId(projects.map(projectView)), `${tenants[index]!.slug} projects`).toEqual(
        byId([...models[index]!.projects.values()]),
      );
      const tasks = await listAll(index, 'tasks', '', 1000);
      expect(byId(tasks.map(taskView)), `${tenants[index]!.slug} tasks`).toEqual(
        byId([...models[index]!.tasks.values()]),
      );
    }
    await groundTruth();
  }

  async function reset(): Promise<void> {
    const done = new Set<string>();
    for (const [index, tenant] of tenants.entries()) {
      const model = models[index]!;
      gone.projects.push(...model.projects.keys());
      gone.tasks.push(...model.tasks.keys());
      model.projects.clear();
      model.tasks.clear();
      if (done.has(placeKey(tenant.placement))) continue;
      done.add(placeKey(tenant.placement));
      const owner = await places.owner(tenant.placement);
      await owner.query(`DELETE FROM ${tableOf(tenant.placement, 'tasks')}`);
      await owner.query(`DELETE FROM ${tableOf(tenant.placement, 'projects')}`);
    }
  }

  /**
   * Two projects with a task each per tenant, some names shared between tenants. Written as the
   * owner, in each tenant's place: setting up a run is not what the run checks, and it is a
   * statement per table instead of a request per row.
   */
  async function seedRows(): Promise<void> {
    for (const [index, tenant] of tenants.entries()) {
      const owner = await places.owner(tenant.placement);
      const projects = [NAMES[index % NAMES.length]!, NAMES[(index + 3) % NAMES.length]!].map((name) => ({
        id: uuidv7(),
        name,
        status: 'active' as const,
      }));
      const title = `${WORDS[index % WORDS.length]!} ${WORDS[(index + 1) % WORDS.length]!}`;
      const tasks = projects.map((project) => ({ id: uuidv7(), project: project.id, title, done: false }));
      await owner.query(
        `INSERT INTO ${tableOf(tenant.placement, 'projects')} (tenant_id, id, name)
         SELECT $1, unnest($2::uuid[]), unnest($3::text[])`,
        [tenant.id, projects.map((row) => row.id), projects.map((row) => row.name)],
      );
      await owner.query(
        `INSERT INTO ${tableOf(tenant.placement, 'tasks')} (tenant_id, id, project, title)
         SELECT $1, unnest($2::uuid[]), unnest($3::uuid[]), $4`,
        [tenant.id, tasks.map((row) => row.id), tasks.map((row) => row.project), title],
      );
      for (const project of projects) addProject(index, project);
      for (const task of tasks) addTask(index, task);
    }
    await groundTruth();
  }

  it(
    'keeps every tenant to its own rows through random operation sequences',
    async () => {
      const seed = process.env.ISOLATION_SEED ? Number(process.env.ISOLATION_SEED) : randomInt(2 ** 31);
      console.log(
        `isolation properties on ${driver}: ${RUNS} runs, seed ${seed} (ISOLATION_SEED=${seed} replays them)`,
      );
      await fc.assert(
        fc.asyncProperty(operations(tenants.length), async (ops) => {
          await reset();
          await seedRows();
          for (const op of ops) {
            current = op.op;
            await step(op);
            steps += 1;
            // Each answer was checked against the model as it came; where every row lies is checked
            // after each write, and every tenant's full lists once the sequence is done.
            if (op.op !== 'get' && op.op !== 'listProjects' && op.op !== 'listTasks') await groundTruth();
          }
          current = 'verify';
          await verify();
        }),
        {
          numRuns: RUNS,
          seed,
          // Bounds the shrinking of a failure too. Running out of time before all runs is a failure:
          // a loaded machine must not quietly check a handful.
          interruptAfterTimeLimit: TIME_LIMIT_MS,
          markInterruptAsFailure: true,
        },
      );
      expect(steps).toBeGreaterThan(50);
      // Own rows were reached, and other tenants' rows were refused, by every kind of route.
      for (const outcome of [
        'createProject:201',
        'createProject:409',
        'createTask:201',
        'createTask:400',
        'get:200',
        'get:404',
        'patchProject:200',
        'patchProject:404',
        'delete:204',
        'delete:404',
        'listProjects:200',
        'listTasks:200',
        'forge:400',
      ]) {
        expect(outcomes.get(outcome) ?? 0, `${outcome} in ${JSON.stringify([...outcomes])}`).toBeGreaterThan(
          0,
        );
      }
    },
    TIME_LIMIT_MS + 30_000,
  );

  it('lists by several guessed ids at once (id[in]), answering with the tenant’s own rows only', async () => {
    const create = async (actor: number, name: string) => {
      const response = await call(actor, { method: 'POST', url: '/api/v1/projects', payload: { name } });
      expect(response.statusCode, response.body).toBe(201);
      addProject(actor, response.json());
      return response.json().id as string;
    };
    await reset();
    const mine = await create(0, 'nova');
    const theirs = await create(1, 'nova');
    const listed = await call(0, { url: `/api/v1/projects?id[in]=${mine},${theirs}` });
    expect(listed.statusCode, listed.body).toBe(200);
    expect((listed.json().items as { id: string }[]).map((item) => item.id)).toEqual([mine]);
    const guessed = await call(0, { url: `/api/v1/projects?id[in]=${theirs}` });
    expect(guessed.statusCode, guessed.body).toBe(200);
    expect(guessed.json().items).toEqual([]);
  });

  it('pages through rows sorted by a timestamp without repeating or losing one', async () => {
    await reset();
    const batch = await call(0, {
      method: 'POST',
      url: '/api/v1/projects/batch',
      payload: { rows: NAMES.slice(0, 3).map((name) => ({ name })) },
    });
    expect(batch.statusCode, batch.body).toBe(201);
    for (const item of batch.json().items as Record<string, unknown>[]) addProject(0, item);
    const later = await call(0, { method: 'POST', url: '/api/v1/projects', payload: { name: NAMES[3] } });
    expect(later.statusCode, later.body).toBe(201);
    addProject(0, later.json());
    for (const sort of ['created_at', '-created_at', 'updated_at', '-updated_at']) {
      const items = await listAll(0, 'projects', `sort=${sort}`, 1);
      expect(items.map((item) => item.id).sort(), sort).toEqual([...models[0]!.projects.keys()].sort());
    }
  });
});
