import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { IsolationLevel } from '../../src/config/config-schema.js';
import { defineConfig } from '../../src/config/load-config.js';
import type { Database } from '../../src/db/database.js';
import { quoteIdent } from '../../src/db/identifiers.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { isTenantryError } from '../../src/errors.js';
import { placementOf } from '../../src/isolation/tenant-placement.js';
import { Tenantry } from '../../src/tenantry.js';
import { IN_CI } from '../helpers/ci.js';
import { ADMIN_TOKEN } from '../helpers/harness.js';
import { type PrivatePostgres, postgresBinDir, startPrivatePostgres } from '../helpers/private-postgres.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

/**
 * The database goes away under load: its connections are terminated, it is stopped and started
 * again, it ends a transaction left idle. The process must survive every one, answer 503 while
 * the database is away, serve again when it is back, and lose no acknowledged write.
 */

const ENTITIES = `entities:
  notes:
    scope: tenant
    fields:
      title: { type: text, required: true }
`;

const available = postgresBinDir() !== undefined;
if (IN_CI && !available) throw new Error('CI is set but no PostgreSQL server binaries (initdb) were found');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

function send(url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      url,
      {
        method,
        agent: false,
        headers: payload === undefined ? headers : { ...headers, 'content-type': 'application/json' },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

async function until(what: string, ms: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`not seen within ${ms} ms: ${what}`);
}

describe.runIf(available)('database faults', () => {
  let pg: PrivatePostgres;
  let dir: string;
  // What would have ended a process of its own: an error event nobody listened to.
  const uncaught: unknown[] = [];
  const onUncaught = (error: unknown) => uncaught.push(error);
  afterEach(async () => {
    await sleep(100);
    expect(uncaught).toEqual([]);
  });

  beforeAll(async () => {
    process.on('uncaughtException', onUncaught);
    pg = await startPrivatePostgres();
    dir = mkdtempSync(join(tmpdir(), 'tenantry-faults-'));
    writeFileSync(join(dir, 'tenantry.config.yaml'), ENTITIES);
  });
  afterAll(async () => {
    process.off('uncaughtException', onUncaught);
    await pg?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('tenantry serve under load', () => {
    let server: ServerProcess;
    const tenants: { slug: string; id: string; key: string; isolation: IsolationLevel }[] = [];
    /** Every answer by status; acknowledged notes by tenant. */
    const statuses = new Map<number, number>();
    const acknowledged = new Map<string, string[]>();
    let lastUnavailable: Answer | undefined;
    let running = true;
    let load: Promise<void>[] = [];

    beforeAll(async () => {
      await pg.query('CREATE DATABASE serve_faults');
      server = await startServerProcess({
        DATABASE_URL: pg.url('serve_faults'),
        TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
        TENANTRY_CONFIG: join(dir, 'tenantry.config.yaml'),
        TENANTRY_DATA_DIR: join(dir, 'serve-data'),
      });
      for (const [slug, isolation] of [
        ['rows-co', 'row'],
        ['schema-co', 'schema'],
        ['db-co', 'database'],
      ] as const) {
        const created = await send(
          `${server.url}/admin/tenants`,
          'POST',
          { authorization: `Bearer ${ADMIN_TOKEN}` },
          { name: slug, slug, isolation },
        );
        expect(created.status, created.body).toBe(201);
        const body = JSON.parse(created.body) as { tenant: { id: string }; apiKey: { key: string } };
        tenants.push({ slug, id: body.tenant.id, key: body.apiKey.key, isolation });
        acknowledged.set(body.tenant.id, []);
      }
      // Writers and readers on every tenant, without pause, for the whole test.
      load = Array.from({ length: 12 }, async (_, worker) => {
        const tenant = tenants[worker % tenants.length]!;
        let written: string | undefined;
        for (let i = 0; running; i += 1) {
          const read = written !== undefined && i % 2 === 1;
          let answer: Answer;
          try {
            answer = read
              ? await send(`${server.url}/api/v1/notes/${written}`, 'GET', { 'x-api-key': tenant.key })
              : await send(
                  `${server.url}/api/v1/notes`,
                  'POST',
                  { 'x-api-key': tenant.key },
                  { title: `${tenant.slug} ${worker} ${i}` },
                );
          } catch (error) {
            // The server process is gone: the assertions on its exit say so.
            if (server.child.exitCode !== null || server.child.signalCode !== null) return;
            throw error;
          }
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
          if (answer.status === 503) lastUnavailable = answer;
          if (answer.status === 201) {
            written = (JSON.parse(answer.body) as { id: string }).id;
            acknowledged.get(tenant.id)!.push(written);
          }
          if (answer.status === 503) await sleep(20);
        }
      });
    });

    afterAll(async () => {
      running = false;
      await Promise.allSettled(load);
      await server?.stop();
    });

    const alive = () => server.child.exitCode === null && server.child.signalCode === null;
    const created = () => statuses.get(201) ?? 0;
    const health = (path: string) => send(`${server.url}${path}`, 'GET', {});

    it('survives its connections being terminated while requests run', async () => {
      await until('writes flowing', 20_000, () => created() >= 30);
      for (let round = 0; round < 3; round += 1) {
        const before = created();
        expect(await pg.terminate('tenantry')).toBeGreaterThan(0);
        await until('writes flowing again', 20_000, () => created() >= before + 30);
      }
      expect(alive(), server.output()).toBe(true);
    });

    it('answers 503 with Retry-After while PostgreSQL is stopped, and serves again when it is back', async () => {
      await pg.stop('fast');
      try {
        const stoppedAt = statuses.get(503) ?? 0;
        await until('503 answers', 20_000, () => (statuses.get(503) ?? 0) >= stoppedAt + 5);
        const answer = lastUnavailable!;
        expect(answer.headers['content-type']).toMatch(/^application\/problem\+json/);
        expect(JSON.parse(answer.body)).toMatchObject({ status: 503, code: 'unavailable' });
        expect(Number(answer.headers['retry-after'])).toBeGreaterThan(0);
        expect((await health('/healthz')).status).toBe(200);
        const ready = await health('/readyz');
        expect(ready.status).toBe(503);
        expect(Number(ready.headers['retry-after'])).toBeGreaterThan(0);
        expect(alive(), server.output()).toBe(true);
      } finally {
        await pg.start();
      }
      const before = created();
      await until('writes after the restart', 30_000, () => created() >= before + 30);
      expect((await health('/readyz')).status).toBe(200);
      expect(alive(), server.output()).toBe(true);
    });

    it('forgets cached tenants when its change listener reconnects: a change it missed meanwhile is seen', async () => {
      const created = await send(
        `${server.url}/admin/tenants`,
        'POST',
        { authorization: `Bearer ${ADMIN_TOKEN}` },
        { name: 'Quiet', slug: 'quiet-co' },
      );
      const { tenant, apiKey } = JSON.parse(created.body) as {
        tenant: { id: string };
        apiKey: { key: string };
      };
      const byKey = () => send(`${server.url}/tenant-info`, 'GET', { 'x-api-key': apiKey.key });
      const byHost = () => send(`${server.url}/tenant-info`, 'GET', { host: 'quiet-co.localhost' });
      expect((await byKey()).status).toBe(200);
      expect((await byHost()).status).toBe(200);
      // A change whose notification this process never receives (as if sent while it was not listening).
      await pg.query(
        "UPDATE tenantry.tenants SET status = 'inactive' WHERE id = $1",
        [tenant.id],
        'serve_faults',
      );
      expect((await byKey()).status).toBe(200);
      expect((await byHost()).status).toBe(200);
      const listeners = async () =>
        (
          await pg.query<{ pid: number }>(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'tenantry-listener' AND datname = 'serve_faults'",
          )
        ).map((row) => row.pid);
      const [before] = await listeners();
      expect(await pg.terminate('tenantry-listener')).toBe(1);
      await until('the listener back', 10_000, async () => {
        const now = await listeners();
        return now.length === 1 && now[0] !== before;
      });
      // A key of an inactive tenant is no credential; its host names an inactive tenant.
      expect(JSON.parse((await byKey()).body)).toMatchObject({ status: 401, code: 'invalid_credentials' });
      expect(JSON.parse((await byHost()).body)).toMatchObject({ status: 403, code: 'tenant_inactive' });
    });

    it('never answered anything but success or 503, and lost no acknowledged write', async () => {
      running = false;
      await Promise.all(load);
      expect(alive(), server.output()).toBe(true);
      expect([...statuses.keys()].sort()).toEqual([200, 201, 503]);
      // Rows as PostgreSQL holds them, wherever each tenant's level puts them.
      const rowsOf = async (tenant: { id: string; isolation: IsolationLevel }) => {
        const placement = placementOf(tenant);
        const rows = await pg.query<{ id: string; tenant_id: string }>(
          `SELECT id, tenant_id FROM ${quoteIdent(placement.schema)}.notes`,
          [],
          placement.database ?? 'serve_faults',
        );
        return new Map(rows.map((row) => [row.id, row.tenant_id]));
      };
      for (const tenant of tenants) {
        const ids = acknowledged.get(tenant.id)!;
        expect(ids.length).toBeGreaterThan(20);
        const stored = await rowsOf(tenant);
        for (const id of ids) expect(stored.get(id), `${tenant.slug} note ${id}`).toBe(tenant.id);
      }
    });
  });

  describe('the pool', () => {
    let db: Database;
    beforeAll(async () => {
      await pg.query('CREATE DATABASE pool_faults');
      db = await openPostgres({
        url: pg.url('pool_faults'),
        maxConnections: 1,
        applicationName: 'pool-faults',
      });
    });
    afterAll(async () => {
      await db?.close();
    });

    const backend = async () =>
      (await db.runtime.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    const outcomeOf = (work: Promise<unknown>) =>
      work.then(
        () => 'done',
        (error: unknown) => (isTenantryError(error) ? error.code : String(error)),
      );

    it('discards a connection the server ended while it was lent, and hands the next waiter a new one', async () => {
      const first = await backend();
      let release: () => void = () => undefined;
      const held = new Promise<void>((resolve) => {
        release = resolve;
      });
      // The only connection is lent to a session; the next request queues behind it.
      const session = outcomeOf(
        db.runtime.withSession(async (lent) => {
          await lent.query('SELECT 1');
          await held;
          await lent.query('SELECT 1');
        }),
      );
      await sleep(50);
      const waiter = db.runtime.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await pg.query('SELECT pg_terminate_backend($1)', [first]);
      await sleep(200);
      release();
      expect(await session).toBe('unavailable');
      const next = (await waiter).rows[0]!.pid;
      expect(next).not.toBe(first);
      expect(await backend()).toBe(next);
    });
  });

  describe('the library', () => {
    let tenantry: Tenantry;
    let tenantId: string;

    beforeAll(async () => {
      await pg.query('CREATE DATABASE library_faults');
      // The server ends any transaction left idle for longer than this.
      await pg.query("ALTER DATABASE library_faults SET idle_in_transaction_session_timeout = '300ms'");
      const config = defineConfig({
        adminToken: ADMIN_TOKEN,
        database: { url: pg.url('library_faults'), maxConnections: 4 },
        entities: normaliseEntities({
          notes: { scope: 'tenant', fields: { title: { type: 'text', required: true } } },
        }),
      });
      tenantry = await Tenantry.open({ config, redis: false });
      const created = await tenantry.tenants.create({ name: 'Library', slug: 'library-co' });
      tenantId = created.tenant.id;
    });
    afterAll(async () => {
      await tenantry?.close();
    });

    const insert = (tx: { query: (sql: string, params: unknown[]) => Promise<unknown> }, title: string) =>
      tx.query('INSERT INTO notes (tenant_id, id, title) VALUES ($1, gen_random_uuid(), $2)', [
        tenantId,
        title,
      ]);
    const titles = async () =>
      (
        await pg.query<{ title: string }>('SELECT title FROM app.notes ORDER BY title', [], 'library_faults')
      ).map((row) => row.title);

    it('a transaction the server ends while it waits fails as unavailable; nothing of it stays, and the next one works', async () => {
      const outcome = await tenantry
        .withTenant(tenantId, (db) =>
          db.transaction(async (tx) => {
            await insert(tx, 'idle-first');
            await sleep(1_000);
            await insert(tx, 'idle-second');
          }),
        )
        .then(
          () => 'committed',
          (error: unknown) => (isTenantryError(error) ? error.code : String(error)),
        );
      expect(outcome).toBe('unavailable');
      await tenantry.withTenant(tenantId, (db) => db.transaction((tx) => insert(tx, 'after-idle')));
      expect(await titles()).toEqual(['after-idle']);
    });

    it('a transaction whose connection is terminated between statements fails as unavailable', async () => {
      const outcome = await tenantry
        .withTenant(tenantId, (db) =>
          db.transaction(async (tx) => {
            await insert(tx, 'terminated-first');
            await pg.query(
              "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'library_faults' AND state LIKE 'idle in transaction%'",
            );
            await sleep(200);
            await insert(tx, 'terminated-second');
          }),
        )
        .then(
          () => 'committed',
          (error: unknown) => (isTenantryError(error) ? error.code : String(error)),
        );
      expect(outcome).toBe('unavailable');
      expect(await titles()).toEqual(['after-idle']);
    });

    it('fails as unavailable while PostgreSQL is stopped, and works again when it is back', async () => {
      await tenantry.withTenant(tenantId, (db) => db.query('SELECT count(*) FROM notes'));
      await pg.stop('fast');
      try {
        await sleep(200);
        const outcome = await tenantry
          .withTenant(tenantId, (db) => db.transaction((tx) => insert(tx, 'while-stopped')))
          .then(
            () => 'committed',
            (error: unknown) =>
              isTenantryError(error)
                ? `${error.code} ${error.retryAfterSeconds ?? ''}`.trim()
                : String(error),
          );
        expect(outcome).toMatch(/^unavailable \d+$/);
      } finally {
        await pg.start();
      }
      await tenantry.withTenant(tenantId, (db) => db.transaction((tx) => insert(tx, 'restarted')));
      expect(await titles()).toEqual(['after-idle', 'restarted']);
    });
  });
});
