import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { LRUCache } from 'lru-cache';
import type { Tenant } from '../tenants/tenant.js';
import type { RedisConnection } from './redis-connection.js';
import { type BucketPolicy, bucketPolicy, CLOSED_RETRY_MS, takeToken } from './token-bucket.js';

export type LimitReason = 'rate' | 'concurrency';

/** What the RateLimit-* headers say about a tenant's bucket. */
export interface RateState {
  readonly limit: number;
  readonly remaining: number;
  readonly resetSeconds: number;
  readonly policy: string;
}

/** The answer to "may this request of this tenant run now?". */
export interface Admission {
  readonly allowed: boolean;
  readonly reason: LimitReason | undefined;
  /** Present when the tenant has a rate limit. */
  readonly rate: RateState | undefined;
  readonly retryAfterSeconds: number;
  /** Decided by this process alone because Redis did not answer. */
  readonly local: boolean;
  /** Frees the request's concurrency slot; safe to call more than once. */
  release(): void;
}

export interface TenantLimiterOptions {
  /** Shared buckets and slots for every process; without it (or while it is down) each process counts alone. */
  readonly redis?: RedisConnection | undefined;
  readonly prefix: string;
  /** A slot whose request never said it ended (its process died) is freed after this long. */
  readonly leaseMs: number;
  /** Called for each decision taken locally because Redis failed. */
  readonly onFallback?: () => void;
  readonly now?: () => number;
}

// One round trip decides both limits, on Redis's clock so processes need no synchronised clocks.
// KEYS: bucket, slots. ARGV: interval ms (0: no rate limit), burst, max concurrent (-1: none),
// lease ms, slot member. Returns {1 allowed | 0 rate | -1 concurrency, remaining, reset ms, retry ms}.
const ADMIT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local remaining, reset, nextTat = -1, 0, nil
if interval > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  local nxt = tat + interval
  local allowAt = nxt - burst * interval
  if now < allowAt then return {0, 0, math.ceil(tat - now), math.ceil(allowAt - now)} end
  remaining = math.floor((now - allowAt) / interval)
  reset = math.ceil(nxt - now)
  nextTat = nxt
end
local cap = tonumber(ARGV[3])
if cap >= 0 then
  local lease = tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= cap then return {-1, remaining, reset, 1000} end
  redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
  redis.call('PEXPIRE', KEYS[2], lease)
end
if nextTat then redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.max(1, math.ceil(nextTat - now))) end
return {1, remaining, reset, 0}
`;

type AdmitCommand = (
  bucketKey: string,
  slotsKey: string,
  intervalMs: number,
  burst: number,
  cap: number,
  leaseMs: number,
  member: string,
) => Promise<[number, number, number, number]>;

const NO_RELEASE: () => void = () => undefined;

/**
 * Per-tenant fairness: a token bucket from `requestsPerSecond` and `burst`, and a cap of
 * `maxConcurrent` requests in flight. In Redis when configured (one script call per request,
 * shared by every process), otherwise in this process; when Redis fails, the decision falls
 * back to this process's own buckets, so the service keeps answering and a tenant stays limited
 * (per process) until Redis is back. Tenants without these limits cost nothing.
 *
 * @example
 * const admission = await limiter.admit(tenant);
 * if (!admission?.allowed) throw rateLimited(admission);
 * try { await work(); } finally { admission.release(); }
 */
export class TenantLimiter {
  readonly #redis: RedisConnection | undefined;
  readonly #prefix: string;
  readonly #leaseMs: number;
  readonly #onFallback: () => void;
  readonly #now: () => number;
  // A bucket evicted here just starts full again: the bound only trades precision for memory.
  readonly #buckets = new LRUCache<string, number>({ max: 100_000 });
  readonly #inFlight = new Map<string, number>();
  readonly #process = randomUUID();
  #sequence = 0;

  constructor(options: TenantLimiterOptions) {
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#leaseMs = options.leaseMs;
    this.#onFallback = options.onFallback ?? (() => undefined);
    this.#now = options.now ?? Date.now;
    this.#redis?.client.defineCommand('tenantryAdmit', { numberOfKeys: 2, lua: ADMIT_SCRIPT });
  }

  /** Undefined when the tenant has neither a rate limit nor a concurrency cap. */
  admit(tenant: Tenant): Admission | Promise<Admission> | undefined {
    const limits = tenant.effective.limits;
    const policy = bucketPolicy(limits);
    const cap = limits.maxConcurrent;
    if (policy === undefined && cap === undefined) return undefined;
    if (policy?.burst === 0) return refused('rate', undefined, CLOSED_RETRY_MS, false);
    const redis = this.#redis;
    if (!redis?.up) {
      if (redis) this.#onFallback();
      return this.#admitLocally(tenant.id, policy, cap, redis !== undefined);
    }
    return this.#admitInRedis(redis.client, tenant.id, policy, cap).catch(() => {
      this.#onFallback();
      return this.#admitLocally(tenant.id, policy, cap, true);
    });
  }

  #admitLocally(
    tenantId: string,
    policy: BucketPolicy | undefined,
    cap: number | undefined,
    local: boolean,
  ): Admission {
    let rate: RateState | undefined;
    let bucketKey: string | undefined;
    let tat: number | undefined;
    if (policy) {
      bucketKey = `${tenantId}|${policy.name}`;
      const decision = takeToken(this.#buckets.get(bucketKey), this.#now(), policy);
      if (!decision.allowed) return refused('rate', rateState(policy, decision), decision.retryMs, local);
      rate = rateState(policy, decision);
      tat = decision.tat;
    }
    let release = NO_RELEASE;
    if (cap !== undefined) {
      const inFlight = this.#inFlight.get(tenantId) ?? 0;
      if (inFlight >= cap) return refused('concurrency', rate, 1000, local);
      this.#inFlight.set(tenantId, inFlight + 1);
      release = once(() => {
        const left = (this.#inFlight.get(tenantId) ?? 1) - 1;
        if (left <= 0) this.#inFlight.delete(tenantId);
        else this.#inFlight.set(tenantId, left);
      });
    }
    // The token is taken only once the request is admitted: a request refused for concurrency
    // does not also drain the bucket.
    if (bucketKey !== undefined && tat !== undefined) this.#buckets.set(bucketKey, tat);
    return { allowed: true, reason: undefined, rate, retryAfterSeconds: 0, local, release };
  }

  async #admitInRedis(
    client: Redis,
    tenantId: string,
    policy: BucketPolicy | undefined,
    cap: number | undefined,
  ): Promise<Admission> {
    // The hash tag keeps a tenant's two keys in one Redis Cluster slot, as the script needs.
    const base = `${this.#prefix}limits:{${tenantId}}`;
    const member = `${this.#process}:${++this.#sequence}`;
    const admit = (client as unknown as { tenantryAdmit: AdmitCommand }).tenantryAdmit;
    const [status, remaining, resetMs, retryMs] = await admit.call(
      client,
      `${base}:bucket:${policy?.name ?? 'none'}`,
      `${base}:slots`,
      policy ? policy.intervalMs : 0,
      policy ? policy.burst : 0,
      cap ?? -1,
      this.#leaseMs,
      member,
    );
    const rate = policy
      ? {
          limit: policy.burst,
          remaining: Math.max(0, remaining),
          resetSeconds: Math.ceil(resetMs / 1000),
          policy: policy.name,
        }
      : undefined;
    if (status === 0) return refused('rate', rate, retryMs, false);
    if (status === -1) return refused('concurrency', rate, retryMs, false);
    const slots = `${base}:slots`;
    const release =
      cap === undefined
        ? NO_RELEASE
        : once(() => {
            // If this fails the slot's lease frees it.
            client.zrem(slots, member).catch(() => undefined);
          });
    return { allowed: true, reason: undefined, rate, retryAfterSeconds: 0, local: false, release };
  }

  /** Requests in flight in this process for a tenant (local counting only). */
  inFlight(tenantId: string): number {
    return this.#inFlight.get(tenantId) ?? 0;
  }
}

function rateState(policy: BucketPolicy, decision: { remaining: number; resetMs: number }): RateState {
  return {
    limit: policy.burst,
    remaining: decision.remaining,
    resetSeconds: Math.ceil(decision.resetMs / 1000),
    policy: policy.name,
  };
}

function refused(
  reason: LimitReason,
  rate: RateState | undefined,
  retryMs: number,
  local: boolean,
): Admission {
  return {
    allowed: false,
    reason,
    rate,
    retryAfterSeconds: Math.max(1, Math.ceil(retryMs / 1000)),
    local,
    release: NO_RELEASE,
  };
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
