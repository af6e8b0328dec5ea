import { describe, expect, it } from 'vitest';
import { TenantDatabases } from '../../src/isolation/tenant-databases.js';

/** Pools open lazily: nothing here connects, so the admission logic is tested on its own. */
function databases(options: { maxConnections: number; acquireTimeoutMs: number }) {
  return new TenantDatabases({
    urls: async () => ({
      url: 'postgres://nobody@127.0.0.1:1/none',
      adminUrl: 'postgres://nobody@127.0.0.1:1/none',
    }),
    perDatabase: 1,
    idleMs: 60_000,
    ...options,
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const at = (location: string) => ({ server: 'main', database: location });

describe('tenant database pools', () => {
  it('bound the pools open at once, and a freed slot goes to a waiter', async () => {
    const pools = databases({ maxConnections: 1, acquireTimeoutMs: 2_000 });
    try {
      const started = Date.now();
      const first = pools.use(at('one'), 'runtime', () => sleep(200));
      const second = pools.use(at('two'), 'runtime', async () => Date.now() - started);
      await first;
      expect(await second).toBeGreaterThanOrEqual(190);
      expect(pools.openPools).toBe(1);
    } finally {
      await pools.close();
    }
  });

  it('a waiter that timed out does not swallow the next freed slot', async () => {
    const pools = databases({ maxConnections: 1, acquireTimeoutMs: 300 });
    try {
      const started = Date.now();
      const holder = pools.use(at('holder'), 'runtime', () => sleep(400));
      // Gives up at ~300 ms, while the holder still has the only slot.
      const impatient = pools
        .use(at('impatient'), 'runtime', async () => 'served')
        .catch((error: Error) => error);
      await sleep(250);
      // Waits from ~250 ms; its own deadline is ~550 ms, the slot frees at ~400 ms.
      const patient = pools.use(at('patient'), 'runtime', async () => Date.now() - started);
      expect(await impatient).toMatchObject({ code: 'unavailable' });
      await holder;
      const servedAt = await patient;
      expect(servedAt).toBeGreaterThanOrEqual(390);
      expect(servedAt).toBeLessThan(500);
    } finally {
      await pools.close();
    }
  });

  it('answers unavailable, without the connection string, when it cannot derive a tenant URL', async () => {
    const pools = new TenantDatabases({
      urls: async () => ({ url: 'postgresql://user:secret@/db?host=/run/sock', adminUrl: 'x' }),
      maxConnections: 2,
    });
    try {
      const error = await pools
        .use(at('one'), 'runtime', async () => 'never')
        .catch((thrown: Error) => thrown);
      expect(error).toMatchObject({ code: 'unavailable' });
      expect(JSON.stringify(error, Object.getOwnPropertyNames(error))).not.toContain('secret');
    } finally {
      await pools.close();
    }
  });
});
