import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { type LibraryProcess, startLibraryProcess } from '../helpers/library-process.js';
import { REDIS_URL, redisAvailable, redisPrefix } from '../helpers/redis.js';

const POSTGRES = DRIVERS.includes('postgres');
const REDIS = POSTGRES && (await redisAvailable());

async function call(
  server: LibraryProcess,
  key: string,
  method: 'GET' | 'PUT' | 'DELETE' | 'POST',
  path: string,
  body?: unknown,
): Promise<{ status: number; body: { value?: unknown } }> {
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers: { 'x-api-key': key, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as { value?: unknown } };
}

const cachedValue = async (server: LibraryProcess, key: string, name: string) =>
  (await call(server, key, 'GET', `/cache/${name}`)).body.value;

const stores = [
  { store: 'memory', env: {} },
  ...(REDIS ? [{ store: 'redis', env: { REDIS_URL, REDIS_PREFIX: redisPrefix() } }] : []),
];

describe.runIf(POSTGRES).each(stores)(
  'request.cache in two library server processes on one PostgreSQL ($store store)',
  ({ store, env: storeEnv }) => {
    let env: TestEnv;
    let a: LibraryProcess;
    let b: LibraryProcess;
    let one: { key: string };
    let two: { key: string };

    beforeAll(async () => {
      env = await startTestEnv('postgres');
      one = await env.createTenant(`procs-one-${store}`);
      two = await env.createTenant(`procs-two-${store}`);
      const processEnv = { DATABASE_URL: env.databaseUrl, CACHE_STORE: store, ...storeEnv };
      [a, b] = await Promise.all([
        startLibraryProcess('./cache-app-process.ts', processEnv),
        startLibraryProcess('./cache-app-process.ts', processEnv),
      ]);
    }, 60_000);
    afterAll(async () => {
      await Promise.all([a?.stop(), b?.stop()]);
      await env?.close();
    });

    it('a delete in one process is seen by the other', async () => {
      for (const server of [a, b]) {
        expect((await call(server, one.key, 'PUT', '/cache/greeting', { hello: 'one' })).status).toBe(200);
        expect(await cachedValue(server, one.key, 'greeting')).toEqual({ hello: 'one' });
      }
      expect((await call(a, one.key, 'DELETE', '/cache/greeting')).status).toBe(200);
      expect(await cachedValue(a, one.key, 'greeting')).toBeNull();
      if (store === 'redis') {
        // One store for both: the very next read in the other process, after the delete, misses.
        expect(await cachedValue(b, one.key, 'greeting')).toBeNull();
      } else {
        // Each process its own store: the other drops the value once the change reaches it.
        await eventually(
          'the other process drops the value',
          async () => (await cachedValue(b, one.key, 'greeting')) === null,
        );
      }
    });

    it('a clear in one process empties the tenant in the other, and no other tenant', async () => {
      for (const server of [a, b]) {
        await call(server, one.key, 'PUT', '/cache/x', 1);
        await call(server, one.key, 'PUT', '/cache/y', 2);
        await call(server, two.key, 'PUT', '/cache/x', 'two');
      }
      expect((await call(a, one.key, 'POST', '/cache-clear')).status).toBe(200);
      await eventually(
        'the other process empties the tenant',
        async () => (await cachedValue(b, one.key, 'x')) === null,
      );
      expect(await cachedValue(b, one.key, 'y')).toBeNull();
      expect(await cachedValue(b, two.key, 'x')).toBe('two');
      expect(await cachedValue(a, two.key, 'x')).toBe('two');
    });

    it('never hands one tenant’s value to another', async () => {
      await call(a, one.key, 'PUT', '/cache/private', { secret: 'of one' });
      for (const server of [a, b]) expect(await cachedValue(server, two.key, 'private')).toBeNull();
      if (store === 'redis') expect(await cachedValue(b, one.key, 'private')).toEqual({ secret: 'of one' });
    });
  },
);
