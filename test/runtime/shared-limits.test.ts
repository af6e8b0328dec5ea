import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedLimits } from '../../src/runtime/shared-limits.js';
import { bucketPolicy } from '../../src/runtime/token-bucket.js';
import { REDIS_URL, redisAvailable, redisPrefix } from '../helpers/redis.js';

const REDIS = await redisAvailable();

describe.runIf(REDIS)('shared limits in Redis', () => {
  let client: Redis;
  let calls = 0;
  let clock = Date.now();
  let limits: SharedLimits;

  beforeAll(() => {
    client = new Redis(REDIS_URL);
    limits = new SharedLimits(client, { prefix: redisPrefix(), leaseMs: 30_000, now: () => clock });
    // Count the script calls the limiter makes (it looks the command up on every call).
    const commands = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const take = commands.tenantryTake!;
    commands.tenantryTake = function (this: Redis, ...args: unknown[]) {
      calls += 1;
      return take.apply(this, args);
    };
  });
  afterAll(() => {
    limits?.close();
    client?.disconnect();
  });

  it('answers a flood over the limit from memory until Redis said the next token comes', async () => {
    const tenant = randomUUID();
    const policy = bucketPolicy({ requestsPerSecond: 1, burst: 1 })!;
    const first = await limits.admit(tenant, policy, undefined);
    expect(first.allowed).toBe(true);
    const refused = await limits.admit(tenant, policy, undefined);
    expect(refused).toMatchObject({ allowed: false, reason: 'rate' });
    expect(refused.retryMs).toBeGreaterThan(0);
    const before = calls;
    for (let i = 0; i < 50; i += 1) {
      const again = limits.admit(tenant, policy, undefined);
      // Synchronous: no promise, no script call.
      expect(again).not.toBeInstanceOf(Promise);
      expect(again).toMatchObject({ allowed: false, reason: 'rate' });
    }
    expect(calls).toBe(before);

    // Once the time Redis gave has passed, Redis is asked again.
    clock += refused.retryMs + 1;
    await limits.admit(tenant, policy, undefined);
    expect(calls).toBe(before + 1);
  });

  it('does not carry a refusal over to a changed limit', async () => {
    const tenant = randomUUID();
    const tight = bucketPolicy({ requestsPerSecond: 1, burst: 1 })!;
    expect((await limits.admit(tenant, tight, undefined)).allowed).toBe(true);
    expect((await limits.admit(tenant, tight, undefined)).allowed).toBe(false);
    const raised = bucketPolicy({ requestsPerSecond: 100, burst: 100 })!;
    const before = calls;
    expect((await limits.admit(tenant, raised, undefined)).allowed).toBe(true);
    expect(calls).toBe(before + 1);
  });
});
