import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tenantryPlugin } from '../../src/fastify.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { CLOSED_REDIS_URL, REDIS_URL, redisAvailable, redisPrefix } from '../helpers/redis.js';

const REDIS = await redisAvailable();

/** A team's own routes using request.cache. */
async function cacheApp(env: TestEnv): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(tenantryPlugin, { tenantry: env.tenantry });
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
  describe.each(stores)('in $name', ({ overrides }) => {
    let env: TestEnv;
    let app: FastifyInstance;
    let a: { id: string; key: string };
    let b: { id: string; key: string };

    beforeAll(async () => {
      env = await startTestEnv(driver, overrides);
      a = await env.createTenant('cache-a');
      b = await env.createTenant('cache-b');
      app = await cacheApp(env);
    });
    afterAll(async () => {
      await app?.close();
      await env?.close();
    });

    it('gets, sets, deletes and expires values', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('k', { n: 1, list: [1, 2] });
      expect(await cache.get('k')).toEqual({ n: 1, list: [1, 2] });
      await cache.del('k');
      expect(await cache.get('k')).toBeUndefined();
      await cache.set('short', 'soon gone', { ttlSeconds: 1 });
      expect(await cache.get('short')).toBe('soon gone');
      await new Promise((resolve) => setTimeout(resolve, 1_100));
      expect(await cache.get('short')).toBeUndefined();
      await cache.set('one', 1);
      await cache.set('two', 2);
      await cache.clear();
      expect([await cache.get('one'), await cache.get('two')]).toEqual([undefined, undefined]);
    });

    it('keeps each tenant to its own values, whatever the key', async () => {
      const cacheA = env.tenantry.cache.forTenant(a);
      const cacheB = env.tenantry.cache.forTenant(b);
      await cacheA.set('profile', 'secret of a');
      expect(await cacheB.get('profile')).toBeUndefined();
      // Keys shaped like another tenant's namespace stay inside their own.
      for (const forged of [
        `${a.id}:profile`,
        `{${a.id}}:profile`,
        `}:profile`,
        `../${a.id}/profile`,
        `cache:{${a.id}}:profile`,
      ]) {
        expect(await cacheB.get(forged)).toBeUndefined();
      }
      await cacheB.set('profile', 'secret of b');
      expect(await cacheA.get('profile')).toBe('secret of a');
      // Clearing b leaves a alone.
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
      expect((await app.inject({ url: '/outside' })).statusCode).toBe(401);
      expect(
        (await app.inject({ method: 'DELETE', url: '/cache/greeting', headers: { 'x-api-key': b.key } }))
          .statusCode,
      ).toBe(200);
      expect((await app.inject({ url: '/cache/greeting', headers: { 'x-api-key': a.key } })).json()).toEqual({
        value: { hello: 'a' },
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
      const results = await Promise.all(Array.from({ length: 10 }, () => cache.wrap('report', 60, slow)));
      expect(calls).toBe(1);
      expect(results.every((result) => result.computed === 1)).toBe(true);
      expect(await cache.wrap('report', 60, slow)).toEqual({ computed: 1 });
      expect(calls).toBe(1);
    });

    it('refuses bad keys, ttls and values with a clear error, storing nothing', async () => {
      const cache = env.tenantry.cache.forTenant(a);
      await expect(cache.set('', 1)).rejects.toMatchObject({ code: 'validation_failed', field: 'key' });
      await expect(cache.set('x'.repeat(513), 1)).rejects.toMatchObject({ code: 'validation_failed' });
      await expect(cache.set('k', 1, { ttlSeconds: 0 })).rejects.toMatchObject({
        code: 'validation_failed',
        field: 'ttlSeconds',
      });
      await expect(cache.set('k', undefined)).rejects.toMatchObject({ code: 'validation_failed' });
      expect(await cache.get('k')).toBeUndefined();
    });
  });

  it.runIf(REDIS)('a value planted under another tenant’s key is refused on read', async () => {
    const prefix = redisPrefix();
    const env = await startTestEnv(driver, {
      redisUrl: REDIS_URL,
      cache: { store: 'redis' },
      rateLimits: { redisPrefix: prefix },
    });
    try {
      const a = await env.createTenant('plant-a');
      const b = await env.createTenant('plant-b');
      // A value written by a under b's namespace (as a bug or an attacker with Redis access might).
      await env.tenantry.redis!.client.set(
        `${prefix}cache:{${b.id}}:k`,
        JSON.stringify({ t: a.id, v: 'from a' }),
      );
      expect(await env.tenantry.cache.forTenant(b).get('k')).toBeUndefined();
      const metrics = (await env.admin('GET', '/metrics')).body;
      expect(metrics).toMatch(/tenantry_cache_reads_total\{outcome="foreign"\} 1/);
    } finally {
      await env.close();
    }
  });

  it('keeps answering while Redis is down: reads miss, writes are skipped, wrap computes', async () => {
    const env = await startTestEnv(driver, { redisUrl: CLOSED_REDIS_URL, cache: { store: 'redis' } });
    try {
      const a = await env.createTenant('down-cache');
      const cache = env.tenantry.cache.forTenant(a);
      await cache.set('k', 1);
      expect(await cache.get('k')).toBeUndefined();
      await cache.del('k');
      await cache.clear();
      expect(await cache.wrap('k', 60, async () => 'computed')).toBe('computed');
    } finally {
      await env.close();
    }
  });
});

describe.runIf(DRIVERS.includes('postgres'))('the in-process cache of two engines on one PostgreSQL', () => {
  it('a delete or a clear in one reaches the other within 5 seconds', async () => {
    const env = await startTestEnv('postgres', { cache: { store: 'memory' } });
    const { Tenantry } = await import('../../src/tenantry.js');
    const other = await Tenantry.open({ config: env.config, migrate: false });
    try {
      const tenant = await env.createTenant('two-engines');
      const here = env.tenantry.cache.forTenant(tenant);
      const there = other.cache.forTenant(tenant);
      await here.set('k', 'v1');
      await there.set('k', 'v1');
      await there.set('other', 'v2');
      await here.del('k');
      const until = async (check: () => Promise<boolean>) => {
        const started = Date.now();
        while (!(await check())) {
          if (Date.now() - started > 5_000) throw new Error('not seen within 5 s');
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return Date.now() - started;
      };
      expect(await until(async () => (await there.get('k')) === undefined)).toBeLessThan(5_000);
      expect(await there.get('other')).toBe('v2');
      await here.clear();
      await until(async () => (await there.get('other')) === undefined);
    } finally {
      await other.close();
      await env.close();
    }
  });
});
