import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TenantDb } from '../../src/isolation/tenant-db.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { startTestEnv, type TestEnv } from '../helpers/harness.js';
import {
  asTenant,
  createTestTenant,
  DRIVER_LEVELS,
  failureOf,
  Places,
  placeKey,
  type TestTenant,
  tableOf,
} from '../helpers/isolation.js';
import { withServer } from '../helpers/postgres.js';

const INSUFFICIENT_PRIVILEGE = '42501';

interface Item {
  readonly id: string;
  readonly name?: string;
  readonly title?: string;
}

interface Actor extends TestTenant {
  /** A word only this tenant's task titles contain (full-text search). */
  readonly word: string;
  projects: string[];
  db: TenantDb;
}

/** What the session looks like outside any tenant transaction. */
interface SessionState extends Record<string, unknown> {
  tenant: string | null;
  usr: string;
  sess: string;
  role: string;
  path: string;
  timeout: string;
}

const SESSION_STATE = `SELECT current_setting('tenantry.tenant_id', true) AS tenant, current_user AS usr,
  session_user AS sess, current_setting('role') AS role, current_setting('search_path') AS path,
  current_setting('statement_timeout') AS timeout`;

/** A small deterministic generator, so a failure replays the same interleaving. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

/**
 * Many requests of three tenants at once on one connection (PostgreSQL pool of size 1; PGlite
 * is a single session anyway): each answer holds only its tenant's rows, and once they are done
 * the connection carries no tenant, role, search_path or timeout at session level.
 */
describe.each(DRIVER_LEVELS)('pooled connection reuse on %s, %s isolation', (driver, isolation) => {
  let env: TestEnv;
  let places: Places;
  let baseline: SessionState;
  const actors: Actor[] = [];

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      entities: EXAMPLE_ENTITIES,
      ...(driver === 'postgres' ? { database: { maxConnections: 1 } } : {}),
    });
    places = new Places(env);
    baseline = (await env.engine.db.owner.query<SessionState>(SESSION_STATE)).rows[0]!;
    for (const name of ['a', 'b', 'c']) {
      const tenant = await createTestTenant(env, `leak-${name}`, isolation);
      const word = `leakword${name}`;
      const batch = await env.inject({
        method: 'POST',
        url: '/api/v1/projects/batch',
        headers: asTenant(tenant),
        payload: { rows: [0, 1, 2].map((i) => ({ name: `${tenant.slug}-p${i}` })) },
      });
      expect(batch.statusCode, batch.body).toBe(201);
      const projects = (batch.json().items as Item[]).map((item) => item.id);
      const tasks = await env.inject({
        method: 'POST',
        url: '/api/v1/tasks/batch',
        headers: asTenant(tenant),
        payload: { rows: projects.map((project, i) => ({ project, title: `${word} task ${i}` })) },
      });
      expect(tasks.statusCode, tasks.body).toBe(201);
      const resolved = await env.engine.store.get(tenant.id);
      actors.push({ ...tenant, word, projects, db: await env.engine.data.forTenant(resolved) });
    }
  });
  afterAll(async () => {
    await places?.close();
    await env?.close();
  });

  it('answers every interleaved request with its own tenant’s rows only', async () => {
    const next = random(0x5eed + isolation.length);
    /** Row ids each tenant's answers contained; checked against the owner's view afterwards. */
    const seen = new Map<string, Set<string>>(actors.map((actor) => [actor.id, new Set()]));
    const problems: string[] = [];
    const note = (actor: Actor, what: string, ok: boolean, detail: string) => {
      if (!ok) problems.push(`${actor.slug} ${what}: ${detail}`);
    };
    const remember = (actor: Actor, items: readonly Item[]) => {
      for (const item of items) seen.get(actor.id)!.add(item.id);
    };
    const otherThan = (actor: Actor) => actors.filter((other) => other !== actor);
    const pick = <T>(list: readonly T[]): T => list[Math.floor(next() * list.length)]!;
    const mentionsOthers = (actor: Actor, body: string) =>
      otherThan(actor).some(
        (other) => body.includes(other.id) || body.includes(other.slug) || body.includes(other.word),
      );

    const operation = (actor: Actor, kind: number, index: number): (() => Promise<void>) => {
      const api = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown) =>
        env.inject({
          method,
          url,
          headers: asTenant(actor),
          ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
        });
      const check = (what: string, response: LightMyRequestResponse, status: number) => {
        note(actor, what, response.statusCode === status, `${response.statusCode} ${response.body}`);
        note(actor, `${what} mentions another tenant`, !mentionsOthers(actor, response.body), response.body);
      };
      switch (kind) {
        case 0:
          return async () => {
            const response = await api('GET', '/api/v1/projects?limit=1000&sort=-name');
            check('list projects', response, 200);
            const items = response.json().items as Item[];
            remember(actor, items);
            note(
              actor,
              'list projects',
              items.length >= 3 && items.every((item) => item.name?.startsWith(`${actor.slug}-`)),
              response.body,
            );
          };
        case 1:
          return async () => {
            const other = pick(otherThan(actor));
            const own = await api('GET', `/api/v1/tasks?q=${actor.word}`);
            check('search own tasks', own, 200);
            const ownItems = own.json().items as Item[];
            remember(actor, ownItems);
            note(actor, 'search own tasks', ownItems.length === 3, own.body);
            const theirs = await api('GET', `/api/v1/tasks?q=${other.word}&title[like]=*task*`);
            check('search other tasks', theirs, 200);
            note(actor, 'search other tasks', (theirs.json().items as Item[]).length === 0, theirs.body);
          };
        case 2:
          return async () => {
            const response = await api('GET', `/api/v1/projects/${pick(actor.projects)}`);
            check('get own project', response, 200);
            remember(actor, [response.json() as Item]);
          };
        case 3:
          return async () => {
            const victim = pick(otherThan(actor));
            const target = pick(victim.projects);
            check('get other project', await api('GET', `/api/v1/projects/${target}`), 404);
            check(
              'patch other project',
              await api('PATCH', `/api/v1/projects/${target}`, { status: 'archived' }),
              404,
            );
            const byId = await api('GET', `/api/v1/projects?id=${target}`);
            check('list by other id', byId, 200);
            note(actor, 'list by other id', (byId.json().items as Item[]).length === 0, byId.body);
          };
        case 4:
          return async () => {
            const response = await api('POST', '/api/v1/projects', { name: `${actor.slug}-new-${index}` });
            check('create project', response, 201);
            remember(actor, [response.json() as Item]);
          };
        case 5:
          return async () => {
            // A failing statement (composite foreign key) on the shared connection.
            const victim = pick(otherThan(actor));
            const response = await api('POST', '/api/v1/tasks', {
              project: pick(victim.projects),
              title: 'steal',
            });
            check('task on other project', response, 400);
          };
        case 6:
          return async () => {
            check('duplicate name', await api('POST', '/api/v1/projects', { name: `${actor.slug}-p0` }), 409);
          };
        case 7:
          return async () => {
            const response = await api('PATCH', `/api/v1/projects/${pick(actor.projects)}`, {
              status: index % 2 ? 'archived' : 'active',
            });
            check('patch own project', response, 200);
            remember(actor, [response.json() as Item]);
          };
        case 8:
          return async () => {
            // No WHERE: only the tenant setting of this very transaction selects the rows.
            const { rows } = await actor.db.query<{ t: string; s: string; u: string }>(
              "SELECT tenant_id::text AS t, current_setting('tenantry.tenant_id') AS s, current_user AS u FROM projects",
            );
            note(
              actor,
              'unfiltered select',
              rows.length >= 3 &&
                rows.every(
                  (row) =>
                    row.t === actor.id && row.s === actor.id && row.u === env.config.database.runtimeRole,
                ),
              JSON.stringify(rows),
            );
          };
        default:
          return async () => {
            const rows = await actor.db.transaction(async (tx) => {
              await tx.query('SELECT pg_sleep(0.001)');
              return (await tx.query<{ t: string }>('SELECT tenant_id::text AS t FROM tasks')).rows;
            });
            note(
              actor,
              'unfiltered transaction',
              rows.length >= 3 && rows.every((row) => row.t === actor.id),
              JSON.stringify(rows),
            );
          };
      }
    };

    let index = 0;
    for (let round = 0; round < 3; round += 1) {
      const work: (() => Promise<void>)[] = [];
      for (let i = 0; i < 60; i += 1) {
        index += 1;
        work.push(operation(pick(actors), Math.floor(next() * 10), index));
      }
      await Promise.all(work.map((run) => run()));
    }
    expect(problems).toEqual([]);

    // Every id an answer held belongs to that tenant, by the owner's view of where rows live.
    const ownerOf = new Map<string, string>();
    for (const actor of actors) {
      const owner = await places.owner(actor.placement);
      for (const table of ['projects', 'tasks']) {
        const { rows } = await owner.query<{ id: string; t: string }>(
          `SELECT id::text AS id, tenant_id::text AS t FROM ${tableOf(actor.placement, table)}`,
        );
        for (const row of rows) ownerOf.set(`${placeKey(actor.placement)}:${row.id}`, row.t);
      }
    }
    for (const actor of actors) {
      const ids = [...seen.get(actor.id)!];
      expect(ids.length).toBeGreaterThan(0);
      const foreign = ids.filter((id) => ownerOf.get(`${placeKey(actor.placement)}:${id}`) !== actor.id);
      expect(foreign, actor.slug).toEqual([]);
    }
  });

  it('refuses a statement sent on a transaction after it ended (it would run on the next user of the connection)', async () => {
    const [a] = actors;
    let leaked: { query: (sql: string) => Promise<unknown> } | undefined;
    await a!.db.transaction(async (tx) => {
      leaked = tx;
      await tx.query('SELECT 1');
    });
    await expect(leaked!.query('SELECT count(*) FROM projects')).rejects.toThrow();
    // The same for a session of the pool.
    let session: { query: (sql: string) => Promise<unknown> } | undefined;
    await env.engine.db.runtime.withSession(async (open) => {
      session = open;
    });
    await expect(session!.query('SELECT 1')).rejects.toThrow();
  });

  it.runIf(isolation !== 'database')(
    "a tenant's temporary table does not shadow the next tenant's table on the same connection",
    async () => {
      const [a, b] = actors;
      // Tenant code may create a temporary table named like an entity; it lives as long as the
      // connection, beyond the transaction, unless the search path puts it last.
      await a!.db.transaction(async (tx) => {
        await tx.query('CREATE TEMPORARY TABLE projects (id uuid, name text)');
        await tx.query("INSERT INTO pg_temp.projects VALUES (gen_random_uuid(), 'planted by a')");
      });
      try {
        // The planted row is there, on the connection the next tenant's statement runs on...
        const planted = await b!.db.query<{ name: string }>('SELECT name FROM pg_temp.projects');
        expect(planted.rows.map((row) => row.name)).toEqual(['planted by a']);
        // ...and unnamed, `projects` is still that tenant's own table.
        const names = (await b!.db.query<{ name: string }>('SELECT name FROM projects')).rows.map(
          (row) => row.name,
        );
        expect(names).not.toContain('planted by a');
        expect(names.length).toBeGreaterThan(0);
        expect(names.every((name) => name.startsWith(`${b!.slug}-`))).toBe(true);
      } finally {
        await a!.db.query('DROP TABLE pg_temp.projects');
      }
    },
  );

  it.runIf(isolation === 'database')(
    'a database tenant may not create a temporary table at all',
    async () => {
      const [a] = actors;
      // Its database's pool is its own, but a temporary table would still outlive the transaction.
      expect(await failureOf(a!.db.query('CREATE TEMPORARY TABLE projects (id uuid, name text)'))).toBe(
        INSUFFICIENT_PRIVILEGE,
      );
      const names = (await a!.db.query<{ name: string }>('SELECT name FROM projects')).rows.map(
        (row) => row.name,
      );
      expect(names.length).toBeGreaterThan(0);
      expect(names.every((name) => name.startsWith(`${a!.slug}-`))).toBe(true);
    },
  );

  it('leaves nothing set at session level on the pooled connection', async () => {
    const after = (await env.engine.db.owner.query<SessionState>(SESSION_STATE)).rows[0]!;
    // Once set with is_local, PostgreSQL keeps a custom setting as '' for the session: that is empty.
    expect(after.tenant ?? '').toBe('');
    expect(baseline.tenant ?? '').toBe('');
    expect(after).toMatchObject({
      usr: baseline.usr,
      sess: baseline.sess,
      role: 'none',
      path: baseline.path,
      timeout: baseline.timeout,
    });
    expect(after.usr).not.toBe(env.config.database.runtimeRole);
    // And the same on a session-scoped use of the pool.
    const inSession = await env.engine.db.owner.withSession(
      async (session) => (await session.query<SessionState>(SESSION_STATE)).rows[0]!,
    );
    expect(inSession.tenant ?? '').toBe('');
    expect(inSession.role).toBe('none');
  });

  it.runIf(driver === 'postgres')('really served everything through one connection', async () => {
    const name = new URL(env.databaseUrl!).pathname.slice(1);
    const { rows } = await withServer((client) =>
      client.query<{ n: string }>(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = $1 AND application_name = 'tenantry'",
        [name],
      ),
    );
    expect(Number(rows[0]!.n)).toBe(1);
    // ...with the tenants' statements prepared on it: the unfiltered select above was planned
    // once and bound for every tenant, and still read only each one's rows. (Database tenants'
    // statements run on their own databases' pools.)
    if (isolation === 'database') return;
    const prepared = await env.engine.db.owner.query<{ statement: string }>(
      "SELECT statement FROM pg_prepared_statements WHERE name LIKE 'tenantry\\_%'",
    );
    expect(prepared.rows.map((row) => row.statement)).toContainEqual(
      expect.stringContaining("current_setting('tenantry.tenant_id') AS s"),
    );
  });
});
