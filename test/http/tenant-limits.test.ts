import { type ChildProcess, spawn } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AdminTokenGuard } from '../../src/auth/admin-token.js';
import { defineConfig } from '../../src/config/load-config.js';
import { tenantryPlugin } from '../../src/fastify.js';
import { buildApp } from '../../src/http/app.js';
import type { EngineLogger } from '../../src/runtime/engine-logger.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { ADMIN_TOKEN, DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { CLOSED_REDIS_URL, REDIS_URL, redisAvailable, redisPrefix } from '../helpers/redis.js';
import { holdSlowHashResults, slowHashRuns } from '../helpers/slow-hash-runs.js';

vi.mock('node:crypto', async (original) =>
  (await import('../helpers/slow-hash-runs.js')).recordingCrypto(await original()),
);

const REDIS = await redisAvailable();

function sample(page: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of page.split('\n')) {
    if (!line.startsWith(name) || line.startsWith('#')) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`)))
      return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

function recordingLogger(): EngineLogger & { lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    info: (_fields, message) => lines.push(`info ${message}`),
    warn: (_fields, message) => lines.push(`warn ${message}`),
    error: (_fields, message) => lines.push(`error ${message}`),
  };
}

/** A second engine and app on the same database: another server process, in miniature. */
async function secondEngine(env: TestEnv, overrides: Parameters<typeof defineConfig>[0] = {}) {
  const config = defineConfig({
    ...overrides,
    adminToken: ADMIN_TOKEN,
    entities: env.config.entities,
    database: env.config.database,
  });
  const tenantry = await Tenantry.open({ config, database: env.engine.db, migrate: false });
  const { guard } = await AdminTokenGuard.setUp(engineOf(tenantry).db.owner, config.adminToken);
  const app = await buildApp({ tenantry, adminGuard: guard });
  return {
    tenantry,
    app,
    close: async () => {
      await app.close();
      await tenantry.close();
    },
  };
}

/** A library route that waits until told, to hold requests in flight. */
async function slowApp(tenantry: Tenantry) {
  const waiting: Array<() => void> = [];
  const app = Fastify();
  await app.register(tenantryPlugin, { tenantry });
  await app.register(
    app.tenantScope((scope) => {
      scope.get('/slow', () => new Promise((resolve) => waiting.push(() => resolve({ ok: true }))));
    }),
  );
  await app.ready();
  return {
    app,
    releaseAll: () => {
      for (const go of waiting.splice(0)) go();
    },
    waiting,
  };
}

async function until(condition: () => boolean, ms = 2_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > ms) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe.each(DRIVERS)('per-tenant limits in one process on %s', (driver) => {
  let env: TestEnv;
  let neighbour: { id: string; slug: string; key: string };
  let capped: { id: string; slug: string; key: string };

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      // A token every 100 s: a spent burst stays spent however slowly a loaded machine runs the test.
      plans: { tiny: { limits: { requestsPerSecond: 0.01, burst: 3 } } },
      rateLimits: { keyFailuresPerMinute: 3, keyFailureBlockSeconds: 60 },
    });
    neighbour = await env.createTenant('limits-b');
    capped = await env.createTenant('limits-c', { config: { limits: { maxConcurrent: 2 } } });
  });
  afterAll(async () => env?.close());

  const info = (tenant: { key: string }, remoteAddress = '10.0.0.1') =>
    env.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key }, remoteAddress });

  /** A tenant on the tiny plan, with a bucket of its own, whose burst is spent: refused from now on. */
  const spentTenant = async (slug: string) => {
    const tenant = await env.createTenant(slug, { plan: 'tiny' });
    for (let i = 0; i < 3; i += 1) expect((await info(tenant)).statusCode).toBe(200);
    expect((await info(tenant)).statusCode).toBe(429);
    return tenant;
  };

  it('a client that leaves before its admission is decided does not keep a concurrency slot', async () => {
    const lone = await env.createTenant('limits-d', { config: { limits: { maxConcurrent: 1 } } });
    const url = await env.app.listen({ port: 0, host: '127.0.0.1' });
    const releaseHashes = holdSlowHashResults();
    try {
      // The key is not verified yet: its first check runs a slow hash, held until the client
      // is gone, so the request is admitted after its connection closed.
      const hashesBefore = slowHashRuns.length;
      const abandoned = httpRequest(`${url}/tenant-info`, { headers: { 'x-api-key': lone.key } });
      const gone = new Promise((resolve) => abandoned.once('close', resolve));
      abandoned.on('error', () => undefined);
      abandoned.end();
      await until(() => slowHashRuns.length > hashesBefore);
      abandoned.destroy();
      await gone;
      // Sent while the check still runs: it shares that check and is admitted after the other.
      const next = fetch(`${url}/tenant-info`, { headers: { 'x-api-key': lone.key } });
      await new Promise((resolve) => setTimeout(resolve, 50));
      releaseHashes();
      expect((await next).status).toBe(200);
      for (let i = 0; i < 2; i += 1) {
        const response = await fetch(`${url}/tenant-info`, { headers: { 'x-api-key': lone.key } });
        expect(response.status).toBe(200);
      }
    } finally {
      releaseHashes();
      await env.app.server.close();
    }
  });

  it('spends the burst, then answers 429 rate_limited with Retry-After, and counts it', async () => {
    const limited = await env.createTenant('limits-a', { plan: 'tiny' });
    const remaining: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const response = await info(limited);
      expect(response.statusCode).toBe(200);
      expect(response.headers['ratelimit-limit']).toBe('3');
      expect(response.headers['ratelimit-policy']).toBe('3;w=300');
      remaining.push(String(response.headers['ratelimit-remaining']));
    }
    expect(remaining).toEqual(['2', '1', '0']);
    const refused = await info(limited);
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({ code: 'rate_limited', status: 429 });
    // The next token is 100 s after the first was taken.
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(60);
    expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(100);
    expect(refused.headers['ratelimit-remaining']).toBe('0');
    // The refusal reached no route: entity routes of the tenant are refused the same way.
    expect(
      (await env.inject({ url: '/tenants/current', headers: { 'x-api-key': limited.key } })).statusCode,
    ).toBe(429);
    const metrics = (await env.admin('GET', '/metrics')).body;
    expect(sample(metrics, 'tenantry_rate_limited_total', { tenant: 'limits-a', reason: 'rate' })).toBe(2);
  });

  it('limits one tenant without touching its neighbour, which carries no RateLimit fields', async () => {
    const limited = await spentTenant('limits-spent');
    for (let i = 0; i < 20; i += 1) {
      const response = await info(neighbour);
      expect(response.statusCode).toBe(200);
      expect(response.headers['ratelimit-limit']).toBeUndefined();
    }
    expect((await info(limited)).statusCode).toBe(429);
  });

  it("gives callers known only by the host a bucket of their own: they cannot spend the tenant's", async () => {
    const hosted = await env.createTenant('limits-h', { plan: 'tiny' });
    const anonymous = () => env.inject({ url: '/tenant-info', headers: { host: 'limits-h.localhost' } });
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) statuses.push((await anonymous()).statusCode);
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    // The tenant's own clients still have their whole burst.
    const remaining: string[] = [];
    for (let i = 0; i < 3; i += 1) {
      const response = await info(hosted);
      expect(response.statusCode).toBe(200);
      remaining.push(String(response.headers['ratelimit-remaining']));
    }
    expect(remaining).toEqual(['2', '1', '0']);
  });

  it('applies a changed limit at once', async () => {
    const limited = await spentTenant('limits-changed');
    const patched = await env.admin('PATCH', `/admin/tenants/${limited.slug}/config`, {
      set: { 'limits.requestsPerSecond': 100, 'limits.burst': 50 },
    });
    expect(patched.statusCode).toBe(200);
    const response = await info(limited);
    expect(response.statusCode).toBe(200);
    expect(response.headers['ratelimit-limit']).toBe('50');
  });

  it('caps requests in flight per tenant, and frees the slot when a request ends or is aborted', async () => {
    const { app, releaseAll, waiting } = await slowApp(env.tenantry);
    try {
      const first = app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
      const second = app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
      await until(() => waiting.length === 2);
      const third = await app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
      expect(third.statusCode).toBe(429);
      expect(third.json()).toMatchObject({ code: 'rate_limited' });
      expect(third.json().detail).toContain('in flight');
      expect(third.headers['retry-after']).toBe('1');
      // Another tenant is not capped by this one's requests.
      const other = app.inject({ url: '/slow', headers: { 'x-api-key': neighbour.key } });
      await until(() => waiting.length === 3);
      releaseAll();
      expect((await first).statusCode).toBe(200);
      expect((await second).statusCode).toBe(200);
      expect((await other).statusCode).toBe(200);
      expect(env.engine.limiter.inFlight(capped.id)).toBe(0);
      const again = app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
      await until(() => waiting.length === 1);
      releaseAll();
      expect((await again).statusCode).toBe(200);
    } finally {
      releaseAll();
      await app.close();
    }
  });

  it('blocks a client address after repeated failed key checks, before hashing again', async () => {
    const bad = 'tny_AAAAAAAAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB';
    const attacker = '10.9.9.9';
    slowHashRuns.length = 0;
    for (let i = 0; i < 3; i += 1) {
      const response = await env.inject({
        url: '/tenant-info',
        headers: { 'x-api-key': bad },
        remoteAddress: attacker,
      });
      expect(response.statusCode).toBe(401);
    }
    // Each failed check paid one slow hash (the decoy: the key id is unknown)...
    expect(slowHashRuns.map((run) => run.kind)).toEqual(['pbkdf2', 'pbkdf2', 'pbkdf2']);
    slowHashRuns.length = 0;
    const blocked = await env.inject({
      url: '/tenant-info',
      headers: { 'x-api-key': bad },
      remoteAddress: attacker,
    });
    expect(blocked.statusCode).toBe(429);
    expect(blocked.json()).toMatchObject({ code: 'rate_limited' });
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(1);
    // ...and the blocked one is refused before it.
    expect(slowHashRuns).toEqual([]);
    // Another address is not affected, nor a key that is already verified.
    expect(
      (await env.inject({ url: '/tenant-info', headers: { 'x-api-key': bad }, remoteAddress: '10.9.9.10' }))
        .statusCode,
    ).toBe(401);
    expect((await info(neighbour, attacker)).statusCode).toBe(200);
    const metrics = (await env.admin('GET', '/metrics')).body;
    expect(sample(metrics, 'tenantry_rate_limited_total', { tenant: 'none', reason: 'key_failures' })).toBe(
      1,
    );
  });

  it('a blocked address still gets a valid key answered; each key id then has its own allowance', async () => {
    const proxy = '10.9.7.7';
    const victim = await env.createTenant('blocked-victim');
    for (let i = 0; i < 3; i += 1) {
      const response = await env.inject({
        url: '/tenant-info',
        headers: { 'x-api-key': `tny_${String(i).padStart(16, '7')}_${'E'.repeat(43)}` },
        remoteAddress: proxy,
      });
      expect(response.statusCode).toBe(401);
    }
    // The address is over its allowance. A valid key that is not cached (first use, or after a
    // reload) is still checked and answered: one client behind a shared proxy locks nobody out.
    env.engine.apiKeys.clear();
    slowHashRuns.length = 0;
    expect((await info(victim, proxy)).statusCode).toBe(200);
    expect(slowHashRuns.filter((run) => run.kind === 'pbkdf2')).toHaveLength(1);
    // A key id no usable key has costs no hash at all from a blocked address.
    slowHashRuns.length = 0;
    const unknown = await env.inject({
      url: '/tenant-info',
      headers: { 'x-api-key': `tny_${'9'.repeat(16)}_${'E'.repeat(43)}` },
      remoteAddress: proxy,
    });
    expect(unknown.statusCode).toBe(429);
    expect(slowHashRuns).toEqual([]);
    // Guessing the secret of an existing key id: that key id's own allowance (3), then refused unhashed.
    const keyId = victim.key.split('_')[1]!;
    const guess = `tny_${keyId}_${'F'.repeat(43)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      statuses.push(
        (await env.inject({ url: '/tenant-info', headers: { 'x-api-key': guess }, remoteAddress: proxy }))
          .statusCode,
      );
    }
    expect(statuses).toEqual([401, 401, 401, 429, 429]);
    expect(slowHashRuns.filter((run) => run.kind === 'pbkdf2')).toHaveLength(3);
  });

  it('a burst of bad keys sent at once pays no more slow hashes than the allowance', async () => {
    const attacker = '10.9.8.7';
    slowHashRuns.length = 0;
    const responses = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        env.inject({
          url: '/tenant-info',
          headers: { 'x-api-key': `tny_${String(i).padStart(16, '0')}_${'C'.repeat(43)}` },
          remoteAddress: attacker,
        }),
      ),
    );
    const statuses = responses.map((response) => response.statusCode);
    // keyFailuresPerMinute is 3: three checks run, every other request waits without a hash.
    expect(statuses.filter((status) => status === 401)).toHaveLength(3);
    expect(statuses.filter((status) => status === 429)).toHaveLength(27);
    expect(slowHashRuns.filter((run) => run.kind === 'pbkdf2')).toHaveLength(3);
  });

  it('one client sending its key many times at once, uncached, is one check: none is refused', async () => {
    const tenant = await env.createTenant('burst-same');
    env.engine.apiKeys.clear();
    slowHashRuns.length = 0;
    const responses = await Promise.all(Array.from({ length: 30 }, () => info(tenant, '10.9.8.5')));
    expect(responses.map((response) => response.statusCode)).toEqual(responses.map(() => 200));
    expect(slowHashRuns.filter((run) => run.kind === 'pbkdf2')).toHaveLength(1);
  });

  it('checks of valid new keys that run together take no allowance: none is refused for the others', async () => {
    const gateway = '10.9.8.6';
    const tenants = await Promise.all(
      ['burst-a', 'burst-b', 'burst-c', 'burst-d', 'burst-e'].map((slug) => env.createTenant(slug)),
    );
    env.engine.apiKeys.clear();
    // Five keys, one address, an allowance of three: checks beyond it wait their turn (429 for a
    // second), but once they succeed the address owes nothing.
    const first = await Promise.all(tenants.map((tenant) => info(tenant, gateway)));
    expect(first.filter((response) => response.statusCode === 200).length).toBeGreaterThanOrEqual(3);
    for (const response of first) expect([200, 429]).toContain(response.statusCode);
    env.engine.apiKeys.clear();
    for (const tenant of tenants) expect((await info(tenant, gateway)).statusCode).toBe(200);
  });
});

describe.runIf(REDIS).each(DRIVERS)('limits shared through Redis on %s', (driver) => {
  let env: TestEnv;
  let tenant: { id: string; slug: string; key: string };
  const prefix = redisPrefix();

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      redisUrl: REDIS_URL,
      rateLimits: { redisPrefix: prefix, keyFailuresPerMinute: 4 },
    });
    tenant = await env.createTenant('shared-a', { config: { limits: { requestsPerSecond: 0.2, burst: 4 } } });
  });
  afterAll(async () => env?.close());

  it('two engines on one Redis share one bucket and one cap', async () => {
    const other = await secondEngine(env, { redisUrl: REDIS_URL, rateLimits: { redisPrefix: prefix } });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 8; i += 1) {
        const app = i % 2 === 0 ? env.app : other.app;
        statuses.push(
          (await app.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } })).statusCode,
        );
      }
      expect(statuses).toEqual([200, 200, 200, 200, 429, 429, 429, 429]);

      // Engines on PGlite share no invalidation channel (one process), so the cap is set up front.
      const capped = await env.createTenant('shared-c', { config: { limits: { maxConcurrent: 1 } } });
      const one = await slowApp(env.tenantry);
      const two = await slowApp(other.tenantry);
      try {
        const held = one.app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
        await until(() => one.waiting.length === 1);
        const refused = await two.app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
        expect(refused.statusCode).toBe(429);
        expect(refused.json().detail).toContain('in flight');
        one.releaseAll();
        expect((await held).statusCode).toBe(200);
        // The slot is freed in Redis when the response closes.
        await new Promise((resolve) => setTimeout(resolve, 50));
        const next = two.app.inject({ url: '/slow', headers: { 'x-api-key': capped.key } });
        await until(() => two.waiting.length === 1);
        two.releaseAll();
        expect((await next).statusCode).toBe(200);
      } finally {
        one.releaseAll();
        two.releaseAll();
        await one.app.close();
        await two.app.close();
      }
    } finally {
      await other.close();
    }
  });

  it('key failures from one address are counted across engines', async () => {
    const other = await secondEngine(env, {
      redisUrl: REDIS_URL,
      rateLimits: { redisPrefix: prefix, keyFailuresPerMinute: 4 },
    });
    try {
      const bad = 'tny_CCCCCCCCCCCCCCCCCCCCCC_DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD';
      const statuses: number[] = [];
      for (let i = 0; i < 5; i += 1) {
        const app = i % 2 === 0 ? env.app : other.app;
        statuses.push(
          (
            await app.inject({
              url: '/tenant-info',
              headers: { 'x-api-key': bad },
              remoteAddress: '10.7.7.7',
            })
          ).statusCode,
        );
      }
      expect(statuses).toEqual([401, 401, 401, 401, 429]);
    } finally {
      await other.close();
    }
  });
});

describe.each(DRIVERS)('limits while Redis is down on %s', (driver) => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      redisUrl: CLOSED_REDIS_URL,
      rateLimits: { keyFailuresPerMinute: 4 },
    });
  });
  afterAll(async () => env?.close());

  it('keeps answering, limits each tenant in this process, and says so in the metrics', async () => {
    const tenant = await env.createTenant('down-a', {
      config: { limits: { requestsPerSecond: 0.2, burst: 2 } },
    });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1)
      statuses.push(
        (await env.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } })).statusCode,
      );
    expect(statuses).toEqual([200, 200, 429, 429]);
    const metrics = (await env.admin('GET', '/metrics')).body;
    expect(sample(metrics, 'tenantry_redis_up')).toBe(0);
    expect(sample(metrics, 'tenantry_limiter_fallback_total', { limiter: 'tenant_limits' })).toBe(4);
  });

  it('limits failed key checks more strictly than when shared (half the allowance)', async () => {
    const bad = 'tny_EEEEEEEEEEEEEEEEEEEEEE_FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF';
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      statuses.push(
        (await env.inject({ url: '/tenant-info', headers: { 'x-api-key': bad }, remoteAddress: '10.8.8.8' }))
          .statusCode,
      );
    }
    expect(statuses).toEqual([401, 401, 429, 429]);
  });
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject()));
    });
  });
}

function startRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('redis-server did not start')), 5_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('Ready to accept connections')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('error', reject);
  });
}

describe.runIf(REDIS)('Redis stops and comes back', () => {
  it('falls back to this process, logs both transitions, and shares again once Redis is back', async () => {
    const port = await freePort();
    let redis = await startRedis(port);
    const logger = recordingLogger();
    const driver = DRIVERS.includes('postgres') ? 'postgres' : 'pglite';
    const base = await startTestEnv(driver);
    const config = defineConfig({
      adminToken: ADMIN_TOKEN,
      database: base.config.database,
      redisUrl: `redis://127.0.0.1:${port}`,
      rateLimits: { redisPrefix: redisPrefix() },
    });
    const tenantry = await Tenantry.open({ config, database: base.engine.db, migrate: false, logger });
    const engine = engineOf(tenantry);
    try {
      expect(engine.redis?.up).toBe(true);
      const tenant = await base.createTenant('flappy', {
        config: { limits: { requestsPerSecond: 1000, burst: 1000 } },
      });
      const resolved = await engine.resolver.resolve({ host: undefined, apiKey: tenant.key }, {
        actor: { kind: 'anonymous', id: 'test' },
      } as never);
      const shared = await engine.limiter.admit(resolved.tenant);
      expect(shared?.local).toBe(false);

      redis.kill('SIGKILL');
      await until(() => engine.redis?.up === false, 5_000);
      const local = await engine.limiter.admit(resolved.tenant);
      expect(local).toMatchObject({ allowed: true, local: true });
      expect(logger.lines.some((line) => line.startsWith('warn Redis is unreachable'))).toBe(true);

      redis = await startRedis(port);
      await until(() => engine.redis?.up === true, 8_000);
      const back = await engine.limiter.admit(resolved.tenant);
      expect(back).toMatchObject({ allowed: true, local: false });
      expect(logger.lines.some((line) => line.startsWith('info Redis is reachable'))).toBe(true);
    } finally {
      await tenantry.close();
      await base.close();
      redis.kill('SIGKILL');
    }
  }, 30_000);
});
