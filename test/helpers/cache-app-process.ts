/**
 * A team's own server in a process of its own: the library with the tenantry plugin and routes
 * that use request.cache. Run through tsx by `startCacheAppProcess`; prints `READY <url>`.
 * Environment: DATABASE_URL, CACHE_STORE (memory | redis), REDIS_URL and REDIS_PREFIX for redis.
 */
import Fastify from 'fastify';
import { defineConfig } from '../../src/config/load-config.js';
import { tenantryPlugin } from '../../src/fastify.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';

const store = process.env.CACHE_STORE === 'redis' ? 'redis' : 'memory';
const config = defineConfig({
  database: { url: process.env.DATABASE_URL },
  cache: { store },
  ...(store === 'redis'
    ? {
        redisUrl: process.env.REDIS_URL,
        rateLimits: { redisPrefix: process.env.REDIS_PREFIX ?? 'tenantry:' },
      }
    : {}),
});
const tenantry = await Tenantry.open({ config, migrate: false });
const { redis } = engineOf(tenantry);
// Serving with Redis still down would answer every read with a miss: the tests would prove nothing.
if (redis && !(await redis.ready(20_000))) throw new Error('Redis did not become ready');

const app = Fastify();
await app.register(tenantryPlugin, { tenantry });
await app.register(
  app.tenantScope((scope) => {
    scope.put<{ Params: { key: string } }>('/cache/:key', async (request) => {
      await request.cache.set(request.params.key, request.body, { ttlSeconds: 300 });
      return { ok: true };
    });
    scope.get<{ Params: { key: string } }>('/cache/:key', async (request) => ({
      value: (await request.cache.get(request.params.key)) ?? null,
    }));
    scope.delete<{ Params: { key: string } }>('/cache/:key', async (request) => {
      await request.cache.del(request.params.key);
      return { ok: true };
    });
    scope.post('/cache-clear', async (request) => {
      await request.cache.clear();
      return { ok: true };
    });
  }),
);
const url = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`READY ${url}\n`);
process.once('SIGTERM', () => {
  void app
    .close()
    .then(() => tenantry.close())
    .finally(() => process.exit(0));
});
