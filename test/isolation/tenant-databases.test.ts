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
    const pools = databases({ maxConnections: 1, acquireTimeoutMs: 10_000 });
    const events: string[] = [];
    try {
      const first = pools.use(at('one'), 'runtime', async () => {
        await sleep(200);
        events.push('first done');
      });
      const second = pools.use(at('two'), 'runtime', async () => {
        events.push('second served');
      });
      await Promise.all([first, second]);
      expect(events).toEqual(['first done', 'second served']);
      expect(pools.openPools).toBe(1);
    } finally {
      await pools.close();
    }
  });

  it('a waiter that timed out does not swallow the next freed slot', async () => {
    const pools = databases({ maxConnections: 1, acquireTimeoutMs: 300 });
    const events: string[] = [];
    try {
      // Timers fire in the order of their deadlines, however late they run: the impatient waiter
      // gives up (~300 ms) while the holder still has the only slot (~400 ms), and the patient one,
      // waiting from ~250 ms, must have that slot as it frees, before its own deadline (~550 ms).
      const holder = pools.use(at('holder'), 'runtime', async () => {
        await sleep(400);
        events.push('holder done');
      });
      const impatient = pools
        .use(at('impatient'), 'runtime', async () => 'served')
        .catch((error: Error) => {
          events.push('impatient refused');
          return error;
        });
      await sleep(250);
      // Set just before the patient's own deadline timer, with the same delay: it fires first.
      // Served when the slot frees, the patient never sees it; woken only by its deadline, it would.
      const deadline = setTimeout(() => events.push('patient deadline'), 300);
      const patient = pools.use(at('patient'), 'runtime', async () => {
        events.push('patient served');
      });
      expect(await impatient).toMatchObject({ code: 'unavailable' });
      await holder;
      await patient;
      clearTimeout(deadline);
      expect(events).toEqual(['impatient refused', 'holder done', 'patient served']);
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
