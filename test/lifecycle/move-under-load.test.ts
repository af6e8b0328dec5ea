import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { placementOf } from '../../src/isolation/tenant-placement.js';
import { finishMove, moveTenant } from '../../src/lifecycle/move/tenant-move.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { exampleDeclaration } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const CONTEXT = { actor: { kind: 'cli', id: 'test' } } as const;
const SEEDED = 20_000;

/** What the clients were told: the rows that must be there after the move, and how. */
interface Ledger {
  readonly names: Map<string, string>;
  readonly deleted: Set<string>;
  readonly failures: string[];
  writes: number;
  reads: number;
  unavailable: number;
}

async function seedRows(env: TestEnv, slug: string): Promise<void> {
  const tenant = await env.engine.store.get(slug);
  const table = `"${placementOf(tenant).schema}".projects`;
  await env.engine.data.bulkTransaction(
    tenant,
    (tx) =>
      tx.query(
        `INSERT INTO ${table} (tenant_id, id, name) SELECT $1, gen_random_uuid(), 'seed ' || g FROM generate_series(1, ${SEEDED}) g`,
        [tenant.id],
      ),
    { owner: true },
  );
}

/** A client that inserts, renames and deletes its own rows, and one that reads, until `stop`. */
async function client(env: TestEnv, key: string, ledger: Ledger, worker: number, stop: () => boolean) {
  const headers = { 'x-api-key': key };
  const mine: string[] = [];
  for (let step = 0; !stop(); step += 1) {
    const action = step % 4;
    let response: Awaited<ReturnType<TestEnv['inject']>>;
    if (action === 3 && mine.length > 0) {
      response = await env.inject({ method: 'GET', url: '/api/v1/projects?limit=20', headers });
      ledger.reads += 1;
      if (response.statusCode !== 200) ledger.failures.push(`read: ${response.statusCode} ${response.body}`);
      continue;
    }
    if (action === 1 && mine.length > 0) {
      const id = mine[step % mine.length]!;
      if (ledger.deleted.has(id)) continue;
      const name = `w${worker} renamed ${step}`;
      response = await env.inject({
        method: 'PATCH',
        url: `/api/v1/projects/${id}`,
        headers,
        payload: { name },
      });
      if (response.statusCode === 200) ledger.names.set(id, name);
    } else if (action === 2 && mine.length > 2) {
      const id = mine.shift()!;
      response = await env.inject({ method: 'DELETE', url: `/api/v1/projects/${id}`, headers });
      if (response.statusCode === 204) {
        ledger.deleted.add(id);
        ledger.names.delete(id);
      }
    } else {
      const name = `w${worker} made ${step}`;
      response = await env.inject({ method: 'POST', url: '/api/v1/projects', headers, payload: { name } });
      if (response.statusCode === 201) {
        const id = (response.json() as { id: string }).id;
        ledger.names.set(id, name);
        mine.push(id);
      }
    }
    ledger.writes += 1;
    if (response.statusCode === 503) {
      ledger.unavailable += 1;
      expect(response.headers['retry-after']).toBeDefined();
    } else if (response.statusCode >= 300) {
      ledger.failures.push(`write: ${response.statusCode} ${response.body}`);
    }
  }
}

async function allNames(env: TestEnv, key: string): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  let cursor: string | undefined;
  do {
    const response = await env.inject({
      method: 'GET',
      url: `/api/v1/projects?limit=200${cursor ? `&next=${cursor}` : ''}`,
      headers: { 'x-api-key': key },
    });
    const page = response.json() as { items: { id: string; name: string }[]; next?: string | null };
    for (const item of page.items) names.set(item.id, item.name);
    cursor = page.next ?? undefined;
  } while (cursor);
  return names;
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
  describe(`tenant moves under load (${driver})`, () => {
    let env: TestEnv;
    let neighbour: { key: string };
    let neighbourNames: Map<string, string>;

    beforeAll(async () => {
      env = await startTestEnv(driver, {
        entities: normaliseEntities(exampleDeclaration()),
        // The old copy stays (sealed) after the flip, as in production: a request that resolved
        // the tenant before the flip still reads it.
        moves: { graceSeconds: 600 },
      });
      neighbour = await env.createTenant('load-neighbour');
      await seedRows(env, 'load-neighbour');
      neighbourNames = await allNames(env, neighbour.key);
    });

    afterAll(async () => {
      await env?.close();
    });

    for (const [from, to] of PAIRS[driver]!) {
      it(`${from} -> ${to} while clients write and read: no acknowledged write is lost, reads never fail`, async () => {
        const tenant = await env.createTenant(`load-${from}-${to}`, { isolation: from });
        await seedRows(env, tenant.slug);
        const ledger: Ledger = {
          names: new Map(),
          deleted: new Set(),
          failures: [],
          writes: 0,
          reads: 0,
          unavailable: 0,
        };
        let done = false;
        const clients = [0, 1, 2, 3].map((worker) => client(env, tenant.key, ledger, worker, () => done));
        // Writes before the move begins too: some rows exist only in the notes of the catch-up.
        await new Promise((resolve) => setTimeout(resolve, 200));
        const report = await moveTenant(env.engine.moves, tenant.slug, { to }, CONTEXT).finally(() => {
          done = true;
        });
        await Promise.all(clients);
        await finishMove(env.engine.moves, tenant.slug, CONTEXT);
        expect(ledger.failures).toEqual([]);
        expect(ledger.writes).toBeGreaterThan(20);
        expect(ledger.reads).toBeGreaterThan(5);
        // PGlite is one session: the bulk copy holds it, so the writes land between the steps.
        if (driver === 'postgres') expect(report.changesApplied).toBeGreaterThan(0);
        const names = await allNames(env, tenant.key);
        for (const [id, name] of ledger.names) expect(names.get(id), id).toBe(name);
        for (const id of ledger.deleted) expect(names.has(id), id).toBe(false);
        expect(names.size).toBe(SEEDED + ledger.names.size);
        expect(await allNames(env, neighbour.key)).toEqual(neighbourNames);
        expect((await env.engine.store.get(tenant.slug)).isolation).toBe(to);
      });
    }
  });
}
