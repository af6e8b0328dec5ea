import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { tenantDatabaseName, tenantSchemaName } from '../../src/isolation/tenant-placement.js';
import { finishMove, moveTenant } from '../../src/lifecycle/move/tenant-move.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { exampleDeclaration } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { withServer } from '../helpers/postgres.js';

const CONTEXT = { actor: { kind: 'cli', id: 'test' } } as const;

/** The example entities, plus a reference to itself and a cycle of two optional references. */
const ENTITIES = {
  ...exampleDeclaration(),
  people: {
    scope: 'tenant',
    fields: {
      name: { type: 'text', required: true },
      manager: { type: 'ref', to: 'people', onDelete: 'set-null' },
      team: { type: 'ref', to: 'teams', onDelete: 'set-null' },
    },
  },
  teams: {
    scope: 'tenant',
    fields: {
      title: { type: 'text', required: true },
      lead: { type: 'ref', to: 'people', onDelete: 'set-null' },
    },
  },
};

type Row = Record<string, unknown> & { id: string };

async function call(
  env: TestEnv,
  key: string,
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
  url: string,
  body?: unknown,
) {
  return env.inject({
    method,
    url,
    headers: { 'x-api-key': key },
    ...(body === undefined ? {} : { payload: body as object }),
  });
}

async function ok<T = Row>(
  env: TestEnv,
  key: string,
  method: 'POST' | 'PATCH',
  url: string,
  body: unknown,
): Promise<T> {
  const response = await call(env, key, method, url, body);
  if (response.statusCode >= 300)
    throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
  return response.json() as T;
}

/** Every row of every entity, as the API shows them, by entity then id. */
async function everything(env: TestEnv, key: string): Promise<Record<string, Row[]>> {
  const result: Record<string, Row[]> = {};
  for (const entity of ['projects', 'tasks', 'people', 'teams']) {
    const rows: Row[] = [];
    let cursor: string | undefined;
    do {
      const response = await call(
        env,
        key,
        'GET',
        `/api/v1/${entity}?limit=200${cursor ? `&next=${cursor}` : ''}`,
      );
      expect(response.statusCode, response.body).toBe(200);
      const page = response.json() as { items: Row[]; next?: string | null };
      rows.push(...page.items);
      cursor = page.next ?? undefined;
    } while (cursor);
    result[entity] = rows.sort((a, b) => a.id.localeCompare(b.id));
  }
  return result;
}

/** A few rows of each kind, a self-reference and a cycle between people and teams. */
async function seed(env: TestEnv, key: string, projects = 3): Promise<void> {
  for (let index = 0; index < projects; index += 1) {
    const project = await ok(env, key, 'POST', '/api/v1/projects', { name: `project ${index} "é"` });
    await ok(env, key, 'POST', '/api/v1/tasks', {
      project: project.id,
      title: `task ${index}\ttab\\`,
      due: '2026-02-28',
      estimate: 0.1,
      meta: { nested: [1, 'two', null] },
    });
  }
  const boss = await ok(env, key, 'POST', '/api/v1/people', { name: 'boss' });
  const child = await ok(env, key, 'POST', '/api/v1/people', { name: 'child', manager: boss.id });
  const team = await ok(env, key, 'POST', '/api/v1/teams', { title: 'core', lead: child.id });
  await ok(env, key, 'PATCH', `/api/v1/people/${boss.id}`, { team: team.id, manager: boss.id });
}

async function placement(env: TestEnv, slug: string): Promise<{ isolation: string; server: string | null }> {
  const response = await env.admin('GET', `/admin/tenants/${slug}`);
  const body = response.json() as { isolation: string; server?: string | null };
  return { isolation: body.isolation, server: body.server ?? null };
}

/** Whether a copy of the tenant is still at `level` (its schema, database, or rows in the shared tables). */
async function copyAt(env: TestEnv, id: string, level: IsolationLevel): Promise<boolean> {
  if (level === 'schema') {
    const { rows } = await env.engine.db.owner.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
      tenantSchemaName(id),
    ]);
    return rows.length > 0;
  }
  if (level === 'database') {
    return withServer(async (client) => {
      const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [
        tenantDatabaseName(id),
      ]);
      return rows.length > 0;
    });
  }
  return env.engine.db.owner.transaction(async (tx) => {
    await tx.query("SELECT set_config('tenantry.tenant_id', $1, true)", [id]);
    const { rows } = await tx.query<{ count: number }>(
      'SELECT count(*)::int AS count FROM app.projects WHERE tenant_id = $1',
      [id],
    );
    return Number(rows[0]?.count) > 0;
  });
}

const PAIRS: Record<string, [IsolationLevel, IsolationLevel][]> = {
  pglite: [
    ['row', 'schema'],
    ['schema', 'row'],
  ],
  postgres: [
    ['row', 'schema'],
    ['schema', 'database'],
    ['database', 'row'],
    ['row', 'database'],
    ['database', 'schema'],
    ['schema', 'row'],
  ],
};

for (const driver of DRIVERS) {
  describe(`tenant moves (${driver})`, () => {
    let env: TestEnv;
    let neighbour: { id: string; key: string };
    let neighbourRows: Record<string, Row[]>;

    beforeAll(async () => {
      env = await startTestEnv(driver, { entities: normaliseEntities(ENTITIES), moves: { graceSeconds: 0 } });
      neighbour = await env.createTenant('neighbour');
      await seed(env, neighbour.key);
      neighbourRows = await everything(env, neighbour.key);
    });

    afterAll(async () => {
      await env?.close();
    });

    for (const [from, to] of PAIRS[driver]!) {
      it(`${from} -> ${to}: every row and reference arrives, the tenant serves from there, the old copy goes`, async () => {
        const tenant = await env.createTenant(`m-${from}-${to}`, { isolation: from });
        await seed(env, tenant.key);
        const before = await everything(env, tenant.key);
        const report = await moveTenant(env.engine.moves, tenant.slug, { to }, CONTEXT);
        expect(report).toMatchObject({
          from: { isolation: from },
          to: { isolation: to },
          sourceDropped: true,
        });
        expect(report.rows).toBe(Object.values(before).reduce((sum, rows) => sum + rows.length, 0));
        expect((await placement(env, tenant.slug)).isolation).toBe(to);
        expect(await everything(env, tenant.key)).toEqual(before);
        // It writes at its new place, references and unique keys still checked there.
        const project = await ok(env, tenant.key, 'POST', '/api/v1/projects', { name: 'after the move' });
        const duplicate = await call(env, tenant.key, 'POST', '/api/v1/projects', { name: 'after the move' });
        expect(duplicate.statusCode).toBe(409);
        await ok(env, tenant.key, 'POST', '/api/v1/tasks', { project: project.id, title: 'new' });
        expect(await copyAt(env, tenant.id, from)).toBe(false);
        expect(await everything(env, neighbour.key)).toEqual(neighbourRows);
      });
    }
  });
}

for (const driver of DRIVERS) {
  describe(`tenant moves over HTTP, refused moves, kept copies (${driver})`, () => {
    let env: TestEnv;

    beforeAll(async () => {
      env = await startTestEnv(driver, { entities: normaliseEntities(ENTITIES) });
    });

    afterAll(async () => {
      await env?.close();
    });

    it('POST /admin/tenants/:t/move needs the admin token, a live tenant and a known level', async () => {
      const tenant = await env.createTenant('http-move');
      const anonymous = await env.inject({
        method: 'POST',
        url: `/admin/tenants/${tenant.slug}/move`,
        payload: { to: 'schema' },
      });
      expect(anonymous.statusCode).toBe(401);
      const forged = await env.inject({
        method: 'POST',
        url: `/admin/tenants/${tenant.slug}/move`,
        headers: { authorization: 'Bearer not-the-token', 'x-api-key': tenant.key },
        payload: { to: 'schema' },
      });
      expect(forged.statusCode).toBe(401);
      expect((await env.admin('POST', '/admin/tenants/nobody-here/move', { to: 'schema' })).statusCode).toBe(
        404,
      );
      const bad = await env.admin('POST', `/admin/tenants/${tenant.slug}/move`, { to: 'galaxy' });
      expect(bad.statusCode).toBe(400);
      expect(bad.json()).toMatchObject({ code: 'validation_failed' });
      const extra = await env.admin('POST', `/admin/tenants/${tenant.slug}/move`, {
        to: 'schema',
        drop: true,
      });
      expect(extra.statusCode).toBe(400);
      const serverForSchema = await env.admin('POST', `/admin/tenants/${tenant.slug}/move`, {
        to: 'schema',
        server: 'main',
      });
      expect(serverForSchema.statusCode).toBe(202);
      const job = serverForSchema.json() as { id: string };
      await env.engine.jobs.idle();
      const shown = (await env.admin('GET', `/admin/jobs/${job.id}`)).json() as {
        status: string;
        error: unknown;
      };
      expect(shown).toMatchObject({ status: 'failed', error: { code: 'validation_failed' } });
      // Nothing moved, nothing left behind.
      expect((await env.engine.store.get(tenant.slug)).isolation).toBe('row');
      expect(await copyAt(env, tenant.id, 'schema')).toBe(false);
    });

    it('a move over HTTP runs as a job; the same level is refused; a kept copy blocks the next move until --finish', async () => {
      const tenant = await env.createTenant('kept-move');
      await seed(env, tenant.key);
      const before = await everything(env, tenant.key);
      const started = await env.admin('POST', `/admin/tenants/${tenant.slug}/move`, {
        to: 'schema',
        keepSource: true,
      });
      expect(started.statusCode).toBe(202);
      expect(started.headers.location).toMatch(/^\/admin\/jobs\//);
      await env.engine.jobs.idle();
      const job = (await env.admin('GET', String(started.headers.location))).json() as {
        status: string;
        kind: string;
        result: { sourceDropped: boolean; to: { isolation: string } };
      };
      expect(job).toMatchObject({ kind: 'move', status: 'succeeded', result: { sourceDropped: false } });
      expect(await everything(env, tenant.key)).toEqual(before);
      expect(await copyAt(env, tenant.id, 'row')).toBe(true);
      // The kept copy is sealed: a write through a handle of the tenant as it was is refused, 503.
      const stale = env.engine.data.forTenant({
        ...(await env.engine.store.get(tenant.slug)),
        isolation: 'row',
      });
      await expect(stale.query("UPDATE projects SET name = 'stale' WHERE false")).rejects.toMatchObject({
        code: 'unavailable',
        retryAfterSeconds: 1,
      });
      await expect(moveTenant(env.engine.moves, tenant.slug, { to: 'row' }, CONTEXT)).rejects.toMatchObject({
        code: 'conflict',
      });
      await expect(
        moveTenant(env.engine.moves, tenant.slug, { to: 'schema' }, CONTEXT),
      ).rejects.toMatchObject({
        code: 'conflict',
      });
      const finish = await env.admin('POST', `/admin/tenants/${tenant.slug}/move/finish`);
      expect(finish.statusCode, finish.body).toBe(200);
      expect(await copyAt(env, tenant.id, 'row')).toBe(false);
      expect((await env.admin('POST', `/admin/tenants/${tenant.slug}/move/finish`)).statusCode).toBe(404);
      await expect(
        moveTenant(env.engine.moves, tenant.slug, { to: 'schema' }, CONTEXT),
      ).rejects.toMatchObject({
        code: 'validation_failed',
      });
      const back = await moveTenant(env.engine.moves, tenant.slug, { to: 'row', keepSource: true }, CONTEXT);
      expect(back.sourceDropped).toBe(false);
      expect(await everything(env, tenant.key)).toEqual(before);
      await finishMove(env.engine.moves, tenant.slug, CONTEXT);
      expect(await copyAt(env, tenant.id, 'schema')).toBe(false);
    });

    it('a cancelled move leaves the tenant where it was, with no partial copy', async () => {
      const tenant = await env.createTenant('cancelled-move');
      await seed(env, tenant.key);
      const cancel = moveTenant(env.engine.moves, tenant.slug, { to: 'schema' }, CONTEXT, {
        cancelled: () => true,
      });
      await expect(cancel).rejects.toMatchObject({ code: 'cancelled' });
      expect((await env.engine.store.get(tenant.slug)).isolation).toBe('row');
      expect(await copyAt(env, tenant.id, 'schema')).toBe(false);
      const triggers = await env.engine.db.owner.query(`SELECT 1 FROM pg_trigger WHERE tgname LIKE $1`, [
        `tenantry_move_${tenant.id.replaceAll('-', '')}%`,
      ]);
      expect(triggers.rows).toEqual([]);
      expect(
        (await call(env, tenant.key, 'POST', '/api/v1/projects', { name: 'after cancel' })).statusCode,
      ).toBe(201);
      const unknownJob = await env.admin('POST', '/admin/jobs/00000000-0000-4000-8000-000000000000/cancel');
      expect(unknownJob.statusCode).toBe(404);
    });
  });
}
