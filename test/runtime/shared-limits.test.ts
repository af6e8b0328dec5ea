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

  describe('concurrency caps across processes', () => {
    const processes: SharedLimits[] = [];
    /** Another server process: a limiter of its own on the same Redis, on the real clock. */
    const process = () => {
      const limiter = new SharedLimits(client, { prefix: sharedPrefix, leaseMs: 30_000 });
      processes.push(limiter);
      return limiter;
    };
    const sharedPrefix = redisPrefix();
    afterAll(() => {
      for (const limiter of processes) limiter.close();
    });

    it('a burst refused for concurrency costs one script call, not one per request', async () => {
      const tenant = randomUUID();
      const holder = process();
      const held = await holder.admit(tenant, undefined, 1);
      expect(held.allowed).toBe(true);
      const other = process();
      // Each limiter defines the script command anew: count the calls from here on.
      let burstCalls = 0;
      const commands = client as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const take = commands.tenantryTake!;
      commands.tenantryTake = function (this: Redis, ...args: unknown[]) {
        burstCalls += 1;
        return take.apply(this, args);
      };
      const decisions = await Promise.all(
        Array.from({ length: 200 }, () => other.admit(tenant, undefined, 1)),
      );
      expect(decisions.every((decision) => !decision.allowed && decision.reason === 'concurrency')).toBe(
        true,
      );
      expect(burstCalls).toBe(1);
      held.release();
    });

    it('slots kept as headroom by a process where the tenant is idle come back within about a second', async () => {
      const tenant = randomUUID();
      const busyEarlier = process();
      // A cap of 64 keeps a headroom of 8 slots after the request ends.
      const first = await busyEarlier.admit(tenant, undefined, 64);
      first.release();
      // The cap is lowered to 4: the idle headroom alone would fill it for good.
      const other = process();
      const refused = await other.admit(tenant, undefined, 4);
      expect(refused).toMatchObject({ allowed: false, reason: 'concurrency' });
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const admitted = await other.admit(tenant, undefined, 4);
      expect(admitted.allowed).toBe(true);
      admitted.release();
    });
  });
});
