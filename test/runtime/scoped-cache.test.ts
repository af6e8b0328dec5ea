import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tenantryPlugin } from '../../src/fastify.js';
import { ChangeBus } from '../../src/runtime/change-bus.js';
import { MemoryCacheStore } from '../../src/runtime/memory-cache-store.js';
import { ScopedCache } from '../../src/runtime/scoped-cache.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { EVENTUALLY_MS, eventually } from '../helpers/eventually.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { withServer } from '../helpers/postgres.js';
import { CLOSED_REDIS_URL, REDIS_URL, redisAvailable, redisPrefix } from '../helpers/redis.js';

const REDIS = await redisAvailable();

/** A team's own routes using request.cache, registered through the tenantry plugin. */
async function cacheApp(tenantry: Tenantry): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(tenantryPlugin, { tenantry });
  await app.register(
    app.tenantScope((scope) => {
      scope.put('/cache/:key', async (request) => {
        await request.cache.set((request.params as { key: string }).key, request.body, { ttlSeconds: 60 });
        return { ok: true };
      });
      scope.get('/cache/:key', async (request) => ({
        value: (await request.cache.get((request.params as { key: string }).key)) ?? null,
      }));
      scope.delete('/cache/:key', async (request) => {
        await request.cache.del((request.params as { key: string }).key);
        return { ok: true };
      });
      scope.get('/report', async (request) => ({
        report: await request.cache.wrap('report', 60, async () => ({ tenant: request.tenant?.slug })),
      }));
    }),
  );
  app.get('/outside', async (request) => request.cache.get('x'));
  await app.ready();
  return app;
}

const stores = [
  { name: 'memory', overrides: { cache: { store: 'memory' as const } } },
  ...(REDIS
    ? [
        {
          name: 'redis',
          overrides: {
            redisUrl: REDIS_URL,
            cache: { store: 'redis' as const },
            rateLimits: { redisPrefix: redisPrefix() },
          },
        },
      ]
    : []),
];

describe.each(DRIVERS)('the tenant-scoped cache on %s', (driver) => {
  describe.each(stores)('in $name', ({ name, overrides }) => {
    let env: TestEnv;
    let app: FastifyInstance;
    let a: { id: string; slug: string; key: string };
    let b: { id: string; slug: string; key: string };

    beforeAll(async () => {
      env = await startTestEnv(driver, overrides);
      a = await env.createTenant('cache-a');
      b = await env.createTenant('cache-b');
      app = await cacheApp(env.tenantry);
    });
    afterAll(async () => {
      await app?.close();
      await env?.close();
    });

    it('uses the configured store', () => {
      expect(env.engine.cache.store).toBe(name);
    });

    it('gets, sets, deletes and expires values', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('k', { n: 1, list: [1, 2] });
      expect(await cache.get('k')).toEqual({ n: 1, list: [1, 2] });
      await cache.set('null', null);
      expect(await cache.get('null')).toBeNull();
      await cache.del('k');
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('short', 'soon gone', { ttlSeconds: 1 });
      expect(await cache.get('short')).toBe('soon gone');
      await eventually('the value expiring', async () => (await cache.get('short')) === undefined);
    });

    it('clears every value of one tenant and nothing of another; new values after a clear stay', async () => {
      const cacheA = env.tenantry.cache.forTenant(a);
      const cacheB = env.tenantry.cache.forTenant(b);
      await cacheA.set('one', 1);
      await cacheA.set('two', 2);
      await cacheB.set('one', 'b1');
      await cacheA.clear();
      expect([await cacheA.get('one'), await cacheA.get('two')]).toEqual([undefined, undefined]);
      expect(await cacheB.get('one')).toBe('b1');
      await cacheA.set('one', 'again');
      expect(await cacheA.get('one')).toBe('again');
      await cacheA.clear();
      await cacheA.clear();
      expect(await cacheA.get('one')).toBeUndefined();
    });

    it('hands out copies: changing a value read or written does not change the cached one', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      const written = { list: [1] };
      await cache.set('copy', written);
      written.list.push(2);
      const read = await cache.get<{ list: number[] }>('copy');
      read?.list.push(3);
      expect(await cache.get('copy')).toEqual({ list: [1] });
    });

    it('keeps each tenant to its own values, whatever the key', async () => {
      const cacheA = env.tenantry.cache.forTenant(a);
      const cacheB = env.tenantry.cache.forTenant(b);
      await cacheA.set('profile', 'secret of a');
      expect(await cacheB.get('profile')).toBeUndefined();
      // Keys shaped like the store's own encoding, or like another tenant's namespace, stay inside
      // the tenant that uses them.
      const forged = [
        `${a.id}:profile`,
        `${a.id}:0:profile`,
        `0:profile`,
        `{${a.id}}:profile`,
        `}:profile`,
        `../${a.id}/profile`,
        `cache:{${a.id}}:profile`,
        `${(overrides as { rateLimits?: { redisPrefix: string } }).rateLimits?.redisPrefix}cache:{${a.id}}:profile`,
      ];
      for (const key of forged) expect(await cacheB.get(key)).toBeUndefined();
      // And writing them from b never overwrites a's value.
      for (const key of forged) await cacheB.set(key, 'written by b');
      expect(await cacheA.get('profile')).toBe('secret of a');
      await cacheB.set('profile', 'secret of b');
      expect(await cacheA.get('profile')).toBe('secret of a');
      await cacheB.del('profile');
      expect(await cacheA.get('profile')).toBe('secret of a');
      await cacheB.clear();
      expect(await cacheA.get('profile')).toBe('secret of a');
    });

    it('serves request.cache over HTTP to the request tenant only, and not outside tenant routes', async () => {
      const put = await app.inject({
        method: 'PUT',
        url: '/cache/greeting',
        headers: { 'x-api-key': a.key },
        payload: { hello: 'a' },
      });
      expect(put.statusCode).toBe(200);
      expect((await app.inject({ url: '/cache/greeting', headers: { 'x-api-key': a.key } })).json()).toEqual({
        value: { hello: 'a' },
      });
      expect((await app.inject({ url: '/cache/greeting', headers: { 'x-api-key': b.key } })).json()).toEqual({
        value: null,
      });
      const outside = await app.inject({ url: '/outside', headers: { 'x-api-key': a.key } });
      expect(outside.statusCode).toBe(401);
      expect(outside.json().code).toBe('tenant_required');
      expect(
        (await app.inject({ method: 'DELETE', url: '/cache/greeting', headers: { 'x-api-key': b.key } }))
          .statusCode,
      ).toBe(200);
      expect((await app.inject({ url: '/cache/greeting', headers: { 'x-api-key': a.key } })).json()).toEqual({
        value: { hello: 'a' },
      });
      // wrap caches per tenant: b never gets the report a computed.
      expect((await app.inject({ url: '/report', headers: { 'x-api-key': a.key } })).json()).toEqual({
        report: { tenant: 'cache-a' },
      });
      expect((await app.inject({ url: '/report', headers: { 'x-api-key': b.key } })).json()).toEqual({
        report: { tenant: 'cache-b' },
      });
    });

    it('computes a wrapped value once for concurrent callers', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      let calls = 0;
      const slow = async () => {
        calls += 1;
        await new Promise((resolve) => setTimeout(resolve, 50));
        return { computed: calls };
      };
      const results = await Promise.all(Array.from({ length: 10 }, () => cache.wrap('wrapped', 60, slow)));
      expect(calls).toBe(1);
      expect(results.every((result) => result.computed === 1)).toBe(true);
      // Every caller has its own copy.
      expect(new Set(results).size).toBe(10);
      expect(await cache.wrap('wrapped', 60, slow)).toEqual({ computed: 1 });
      expect(calls).toBe(1);
      // Another tenant's wrap of the same key computes its own.
      expect(await env.tenantry.cache.forTenant(b).wrap('wrapped', 60, slow)).toEqual({ computed: 2 });
    });

    it('a failed wrap caches nothing and lets the next caller try again', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      await expect(
        cache.wrap('flaky', 60, async () => {
          throw new Error('source down');
        }),
      ).rejects.toThrow('source down');
      expect(await cache.wrap('flaky', 60, async () => 'fine')).toBe('fine');
      expect(await cache.get('flaky')).toBe('fine');
    });

    it('a delete while a wrap computes keeps the computed (possibly stale) value out of the cache', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      let release: (() => void) | undefined;
      const computing = cache.wrap('raced', 60, async () => {
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        return 'computed before the delete';
      });
      await eventually('the held computation to start', () => release !== undefined);
      await cache.del('raced');
      release?.();
      expect(await computing).toBe('computed before the delete');
      expect(await cache.get('raced')).toBeUndefined();
    });

    it('refuses bad keys, ttls and values with a clear error, storing nothing', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      await expect(cache.set('', 1)).rejects.toMatchObject({ code: 'validation_failed', field: 'key' });
      await expect(cache.set('x'.repeat(513), 1)).rejects.toMatchObject({
        code: 'validation_failed',
        field: 'key',
      });
      await expect(cache.get(42 as unknown as string)).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(cache.set('k', 1, { ttlSeconds: 0 })).rejects.toMatchObject({
        code: 'validation_failed',
        field: 'ttlSeconds',
      });
      await expect(cache.set('k', 1, { ttlSeconds: 8 * 86_400 })).rejects.toMatchObject({
        field: 'ttlSeconds',
      });
      await expect(cache.set('k', undefined)).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(cache.set('k', 10n)).rejects.toMatchObject({ code: 'validation_failed', field: 'value' });
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      await expect(cache.set('k', circular)).rejects.toMatchObject({ field: 'value' });
      await expect(cache.set('k', 'x'.repeat(1024 * 1024 + 1))).rejects.toMatchObject({
        code: 'validation_failed',
        field: 'value',
      });
      let ran = false;
      await expect(
        cache.wrap('k', -1, async () => {
          ran = true;
          return 1;
        }),
      ).rejects.toMatchObject({ field: 'ttlSeconds' });
      expect(ran).toBe(false);
      expect(await cache.get('k')).toBeUndefined();
      expect(() => env.tenantry.cache.forTenant({ id: 'not-a-tenant-id' })).toThrow(
        expect.objectContaining({ code: 'validation_failed' }),
      );
    });

    it('gives withTenant jobs the tenant’s cache', async () => {
      await env.tenantry.withTenant(a.id, async (_db, { tenant, cache }) => {
        expect(tenant.id).toBe(a.id);
        await cache.set('from-job', 'done');
      });
      expect(await env.tenantry.cache.forTenant(a).get('from-job')).toBe('done');
    });

    it('drops a deleted tenant’s values', async () => {
      await env.tenantry.cache.forTenant(a).set('profile', 'secret of a');
      const doomed = await env.createTenant('cache-doomed');
      const cache = env.tenantry.cache.forTenant(doomed);
      await cache.set('k', 'still here?');
      expect(await cache.get('k')).toBe('still here?');
      expect((await env.admin('DELETE', `/admin/tenants/${doomed.slug}`)).statusCode).toBeLessThan(300);
      await eventually(
        'the deleted tenant’s value dropped',
        async () => (await cache.get('k')) === undefined,
      );
      expect(await env.tenantry.cache.forTenant(a).get('profile')).toBe('secret of a');
    });
  });

  it.runIf(REDIS)('a value planted in Redis under another tenant’s key is refused on read', async () => {
    const prefix = redisPrefix();
    const env = await startTestEnv(driver, {
      redisUrl: REDIS_URL,
      cache: { store: 'redis' },
      rateLimits: { redisPrefix: prefix },
    });
    try {
      const a = await env.createTenant('plant-a');
      const b = await env.createTenant('plant-b');
      const cacheB = env.tenantry.cache.forTenant(b);
      await cacheB.set('k', 'from b');
      const client = env.engine.redis!.client;
      const [stored] = (await client.keys(`${prefix}cache:{${b.id}}:*`)) as [string];
      expect(stored).toBeDefined();
      // A value of a's under b's key (as a bug, or someone with access to Redis, might put it).
      await client.set(stored, JSON.stringify({ t: a.id, v: 'from a' }));
      expect(await cacheB.get('k')).toBeUndefined();
      // Text that is no envelope at all is refused too, and never throws.
      for (const planted of ['"from a"', '{"v":"no tenant"}', 'not json', 'null', '{"t":null}']) {
        await client.set(stored, planted);
        expect(await cacheB.get('k')).toBeUndefined();
      }
      // wrap computes instead of returning the planted value.
      await client.set(stored, JSON.stringify({ t: a.id, v: 'from a' }));
      expect(await cacheB.wrap('k', 60, async () => 'computed by b')).toBe('computed by b');
      expect(await cacheB.get('k')).toBe('computed by b');
      const metrics = (await env.admin('GET', '/metrics')).body;
      expect(metrics).toMatch(/tenantry_cache_reads_total\{outcome="foreign"\} 7/);
    } finally {
      await env.close();
    }
  });

  it.runIf(REDIS)(
    'two engines on one Redis share values; a delete and a clear are seen at once',
    async () => {
      const prefix = redisPrefix();
      const overrides = {
        redisUrl: REDIS_URL,
        cache: { store: 'redis' as const },
        rateLimits: { redisPrefix: prefix },
      };
      const env = await startTestEnv(driver, overrides);
      const other = await Tenantry.open({ config: env.config, database: env.engine.db, migrate: false });
      try {
        expect(await engineOf(other).redis?.ready(EVENTUALLY_MS)).toBe(true);
        const tenant = await env.createTenant('shared-redis');
        const here = env.tenantry.cache.forTenant(tenant);
        const there = other.cache.forTenant(tenant);
        await here.set('k', 'v1');
        expect(await there.get('k')).toBe('v1');
        await there.del('k');
        expect(await here.get('k')).toBeUndefined();
        await here.set('a', 1);
        await here.set('b', 2);
        await there.clear();
        expect([await here.get('a'), await here.get('b')]).toEqual([undefined, undefined]);
        expect(await there.wrap('w', 60, async () => 'once')).toBe('once');
        expect(await here.wrap('w', 60, async () => 'twice')).toBe('once');
      } finally {
        await other.close();
        await env.close();
      }
    },
  );

  it('keeps answering while Redis is down: reads miss, writes are skipped, wrap computes', async () => {
    const env = await startTestEnv(driver, { redisUrl: CLOSED_REDIS_URL, cache: { store: 'redis' } });
    const app = await cacheApp(env.tenantry);
    try {
      const a = await env.createTenant('down-cache');
      const cache = env.tenantry.cache.forTenant(a);
      await cache.set('k', 1);
      expect(await cache.get('k')).toBeUndefined();
      await cache.del('k');
      await cache.clear();
      expect(await cache.wrap('k', 60, async () => 'computed')).toBe('computed');
      // Routes answer as if nothing were cached.
      const headers = { 'x-api-key': a.key };
      expect(
        (await app.inject({ method: 'PUT', url: '/cache/k', headers, payload: { v: 1 } })).statusCode,
      ).toBe(200);
      expect((await app.inject({ url: '/cache/k', headers })).json()).toEqual({ value: null });
      expect((await app.inject({ method: 'DELETE', url: '/cache/k', headers })).statusCode).toBe(200);
      expect((await app.inject({ url: '/report', headers })).json()).toEqual({
        report: { tenant: 'down-cache' },
      });
      const metrics = (await env.admin('GET', '/metrics')).body;
      expect(metrics).toMatch(/tenantry_cache_reads_total\{outcome="unavailable"\} 4\n/);
      expect(metrics).toMatch(/tenantry_cache_skipped_total\{operation="set"\} 4\n/);
      expect(metrics).toMatch(/tenantry_cache_skipped_total\{operation="del"\} 2/);
      expect(metrics).toMatch(/tenantry_cache_skipped_total\{operation="clear"\} 1/);
    } finally {
      await app.close();
      await env.close();
    }
  });
});

describe.runIf(DRIVERS.includes('postgres'))('the in-process cache on PostgreSQL', () => {
  it('a delete or a clear in one engine reaches another', async () => {
    const env = await startTestEnv('postgres', { cache: { store: 'memory' } });
    const other = await Tenantry.open({ config: env.config, migrate: false });
    try {
      const tenant = await env.createTenant('two-engines');
      const here = env.tenantry.cache.forTenant(tenant);
      const there = other.cache.forTenant(tenant);
      await here.set('k', 'v1');
      await there.set('k', 'v1');
      await there.set('other', 'v2');
      await here.del('k');
      // Set again at once: the delete's own notification, coming back, must not undo it.
      await here.set('k', 'v3');
      await eventually(
        'the delete reaching the other engine',
        async () => (await there.get('k')) === undefined,
      );
      expect(await there.get('other')).toBe('v2');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await here.get('k')).toBe('v3');
      await here.clear();
      await eventually(
        'the clear reaching the other engine',
        async () => (await there.get('other')) === undefined,
      );
    } finally {
      await other.close();
      await env.close();
    }
  });

  it('serves nothing while invalidations may be lost, and forgets everything once they flow again', async () => {
    const env = await startTestEnv('postgres', { cache: { store: 'memory' } });
    try {
      const tenant = await env.createTenant('gap');
      const cache = env.tenantry.cache.forTenant(tenant);
      await cache.set('k', 'before the gap');
      expect(await cache.get('k')).toBe('before the gap');
      const database = new URL(env.databaseUrl!).pathname.slice(1);
      await withServer((client) =>
        client.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
            WHERE application_name = 'tenantry-listener' AND datname = $1`,
          [database],
        ),
      );
      await eventually('the bus noticing the lost listener', () => !env.engine.bus.reliable);
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('during', 'the gap');
      expect(await cache.get('during')).toBeUndefined();
      await eventually('the bus listening again', () => env.engine.bus.reliable);
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('k', 'after the gap');
      expect(await cache.get('k')).toBe('after the gap');
    } finally {
      await env.close();
    }
  });
});

describe('a cache invalidation the database cannot send', () => {
  it('deletes and clears locally, counts the skipped announcement, and does not throw', async () => {
    const skipped: string[] = [];
    const cache = new ScopedCache({
      settings: {
        store: 'memory',
        defaultTtlSeconds: 60,
        maxEntries: 100,
        maxBytes: 1_000_000,
        maxTenantShare: 0.25,
        prefix: 'x:',
      },
      bus: new ChangeBus(),
      redis: undefined,
      broadcast: async () => {
        throw new Error('database down');
      },
      onSkipped: (operation) => skipped.push(operation),
    });
    const tenant = cache.forTenant({ id: '01a24bf3-12a2-76cd-a771-2d8a897238c8' });
    await tenant.set('k', { v: 1 });
    await expect(tenant.del('k')).resolves.toBeUndefined();
    expect(await tenant.get('k')).toBeUndefined();
    await tenant.set('k', { v: 2 });
    await expect(tenant.clear()).resolves.toBeUndefined();
    expect(await tenant.get('k')).toBeUndefined();
    expect(skipped).toEqual(['del', 'clear']);
  });
});

describe('the in-process store shared by tenants', () => {
  const tenantA = '01a24bf3-0000-7000-8000-00000000000a';
  const tenantB = '01a24bf3-0000-7000-8000-00000000000b';
  const store = () =>
    new MemoryCacheStore({ maxEntries: 100, maxBytes: 100_000, tenantShare: 0.25, reliable: () => true });

  it("a tenant writing large values cannot evict another tenant's entries", () => {
    const shared = store();
    for (let i = 0; i < 20; i += 1) shared.set(tenantB, `b${i}`, 'x'.repeat(100), 60);
    for (let i = 0; i < 500; i += 1) shared.set(tenantA, `a${i}`, 'y'.repeat(5_000), 60);
    for (let i = 0; i < 20; i += 1) expect(shared.get(tenantB, `b${i}`)).toBe('x'.repeat(100));
    // A keeps its newest values within its share (a quarter of 100,000 bytes).
    expect(shared.usageOf(tenantA).bytes).toBeLessThanOrEqual(25_000);
    expect(shared.get(tenantA, 'a499')).toBe('y'.repeat(5_000));
    expect(shared.get(tenantA, 'a0')).toBeNull();
  });

  it('holds a tenant to its share of the entries too, oldest first out', () => {
    const shared = store();
    for (let i = 0; i < 40; i += 1) shared.set(tenantA, `k${i}`, 'v', 60);
    expect(shared.usageOf(tenantA).entries).toBe(25);
    expect(shared.get(tenantA, 'k14')).toBeNull();
    expect(shared.get(tenantA, 'k15')).toBe('v');
    // Overwriting, deleting and dropping keep the count right.
    shared.set(tenantA, 'k39', 'w', 60);
    expect(shared.usageOf(tenantA).entries).toBe(25);
    shared.del(tenantA, 'k39');
    expect(shared.usageOf(tenantA).entries).toBe(24);
    expect(shared.set(tenantA, 'huge', 'z'.repeat(20_000), 60)).toBe(false);
    expect(shared.get(tenantA, 'huge')).toBeNull();
  });
});
