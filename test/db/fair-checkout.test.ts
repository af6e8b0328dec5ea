import { afterAll, describe, expect, it } from 'vitest';
import type { Database, TenantSettings } from '../../src/db/database.js';
import { FairCheckout } from '../../src/db/fair-checkout.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { POSTGRES_SERVER_URL, postgresAvailable } from '../helpers/postgres.js';

const POSTGRES = await postgresAvailable();

describe('fair checkout of connections', () => {
  it('grants at once, and synchronously, while a connection is free', () => {
    const checkout = new FairCheckout(2, 1_000);
    expect(checkout.acquire('a')).toBeUndefined();
    expect(checkout.acquire('b')).toBeUndefined();
    expect(checkout.inUse).toBe(2);
    expect(checkout.acquire('a')).toBeInstanceOf(Promise);
    checkout.release();
    checkout.release();
    checkout.release();
    expect(checkout.inUse).toBe(0);
  });

  it('serves waiting tenants in turn, each tenant’s own waiters in arrival order', async () => {
    const checkout = new FairCheckout(1, 1_000);
    expect(checkout.acquire('a')).toBeUndefined();
    const served: string[] = [];
    const wait = (key: string, label: string) => checkout.acquire(key)!.then(() => served.push(label));
    const waiting = [wait('a', 'a1'), wait('a', 'a2'), wait('a', 'a3'), wait('b', 'b1'), wait('c', 'c1')];
    expect(checkout.waiting).toBe(5);
    for (let i = 0; i < 5; i += 1) {
      checkout.release();
      await Promise.resolve();
    }
    await Promise.all(waiting);
    // First come, first served would give a1 a2 a3 b1 c1: b and c behind all of a's burst.
    expect(served).toEqual(['a1', 'b1', 'c1', 'a2', 'a3']);
    checkout.release();
    expect(checkout.inUse).toBe(0);
    expect(checkout.waiting).toBe(0);
  });

  it('hands a released connection straight to the next waiter', async () => {
    const checkout = new FairCheckout<string>(1, 1_000);
    expect(checkout.acquire('a')).toBeUndefined();
    const waiting = checkout.acquire('b')!;
    expect(checkout.release('connection 1')).toBe(true);
    expect(await waiting).toBe('connection 1');
    // Nobody waits now: the checkout becomes free and the caller keeps its connection.
    expect(checkout.release('connection 1')).toBe(false);
    expect(checkout.inUse).toBe(0);
  });

  it('a waiter that timed out leaves its queue and takes no connection', async () => {
    const checkout = new FairCheckout(1, 30);
    expect(checkout.acquire('a')).toBeUndefined();
    await expect(checkout.acquire('b')).rejects.toThrow('timeout exceeded when trying to connect');
    expect(checkout.waiting).toBe(0);
    const next = checkout.acquire('c')!;
    checkout.release();
    await next;
    expect(checkout.inUse).toBe(1);
    checkout.release();
    expect(checkout.inUse).toBe(0);
    // Free again: granted at once.
    expect(checkout.acquire('d')).toBeUndefined();
  });
});

const settingsOf = (tenantId: string): TenantSettings => ({
  role: 'postgres',
  tenantId,
  searchPath: '"public"',
  statementTimeoutMs: 5_000,
});

describe.runIf(POSTGRES)('fair checkout on a PostgreSQL pool', () => {
  const opened: Database[] = [];
  afterAll(async () => {
    for (const db of opened) await db.close();
  });

  it('a tenant’s single request is not queued behind another tenant’s burst', async () => {
    const db = await openPostgres({ url: POSTGRES_SERVER_URL, maxConnections: 1 });
    opened.push(db);
    const a = settingsOf('00000000-0000-0000-0000-00000000000a');
    const b = settingsOf('00000000-0000-0000-0000-00000000000b');
    const finished: string[] = [];
    const sleep = (settings: TenantSettings, label: string) =>
      db.runtime.scopedQuery(settings, 'SELECT pg_sleep(0.02)').then(() => finished.push(label));
    const burst = [1, 2, 3, 4, 5].map((n) => sleep(a, `a${n}`));
    const single = db.runtime
      .scopedTransaction(b, (tx) => tx.query('SELECT pg_sleep(0.02)'))
      .then(() => finished.push('b'));
    await Promise.all([...burst, single]);
    // a1 held the one connection and a2–a5 were queued when b arrived: b waits for one turn of a
    // (a2), not for the whole burst (first come, first served: after a5).
    expect(finished).toEqual(['a1', 'a2', 'b', 'a3', 'a4', 'a5']);
  });

  it('control-plane queries take their turn too, and a pool of one serves them all', async () => {
    const db = await openPostgres({ url: POSTGRES_SERVER_URL, maxConnections: 1 });
    opened.push(db);
    const results = await Promise.all([
      db.runtime.query<{ n: number }>('SELECT 1 AS n'),
      db.runtime.scopedQuery<{ n: number }>(
        settingsOf('00000000-0000-0000-0000-00000000000c'),
        'SELECT 2 AS n',
      ),
      db.runtime.transaction((tx) => tx.query<{ n: number }>('SELECT 3 AS n')),
      db.runtime.withSession((session) => session.query<{ n: number }>('SELECT 4 AS n')),
    ]);
    expect(results.map((result) => result.rows[0]?.n)).toEqual([1, 2, 3, 4]);
  });
});
