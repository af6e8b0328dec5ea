import { LRUCache } from 'lru-cache';
import type { RedisConnection } from './redis-connection.js';
import { type SharedDecision, SharedLimits } from './shared-limits.js';
import {
  type BucketPolicy,
  bucketKey,
  bucketPolicy,
  CLOSED_RETRY_MS,
  type RateLimits,
  takeToken,
} from './token-bucket.js';

/** What the limiter reads of a tenant: an immutable snapshot (a change makes a new object). */
export interface LimitedTenant {
  readonly id: string;
  readonly effective: { readonly limits: RateLimits };
}

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

const NO_RELEASE: () => void = () => undefined;

/**
 * Per-tenant fairness: a token bucket from `requestsPerSecond` and `burst`, and a cap of
 * `maxConcurrent` requests in flight. In Redis when configured (shared by every process, taken in
 * batches: see SharedLimits), otherwise in this process; when Redis fails, the decision falls
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
  readonly #shared: SharedLimits | undefined;

  constructor(options: TenantLimiterOptions) {
    this.#redis = options.redis;
    this.#prefix = options.prefix;
    this.#leaseMs = options.leaseMs;
    this.#onFallback = options.onFallback ?? (() => undefined);
    this.#now = options.now ?? Date.now;
    this.#shared = this.#redis
      ? new SharedLimits(this.#redis.client, { prefix: this.#prefix, leaseMs: this.#leaseMs, now: this.#now })
      : undefined;
  }

  /**
   * Undefined when the tenant has neither a rate limit nor a concurrency cap. Callers without
   * credentials (known only by the tenant's host, which is public) spend a bucket and a cap of
   * their own with the same limits: whoever knows a tenant's host name cannot use up the
   * allowance of its API clients and users.
   */
  admit(
    tenant: LimitedTenant,
    callerKind: 'authenticated' | 'anonymous' = 'authenticated',
  ): Admission | Promise<Admission> | undefined {
    const plan = planOf(tenant);
    const { policy, cap } = plan;
    if (policy === undefined && cap === undefined) return undefined;
    if (policy?.burst === 0) return refused('rate', undefined, CLOSED_RETRY_MS, false);
    const caller = plan[callerKind];
    const shared = this.#shared;
    if (!shared || !this.#redis?.up) {
      if (shared) this.#onFallback();
      return this.#admitLocally(caller, policy, cap, shared !== undefined);
    }
    const decided = shared.admit(caller.id, policy, cap, caller.bucketKey);
    if (!(decided instanceof Promise)) return this.#fromShared(decided, policy);
    return decided.then(
      (decision) => this.#fromShared(decision, policy),
      () => {
        this.#onFallback();
        return this.#admitLocally(caller, policy, cap, true);
      },
    );
  }

  close(): void {
    this.#shared?.close();
  }

  #fromShared(decision: SharedDecision, policy: BucketPolicy | undefined): Admission {
    const rate = policy
      ? {
          limit: policy.burst,
          remaining: Math.max(0, decision.remaining),
          resetSeconds: Math.ceil(decision.resetMs / 1000),
          policy: policy.name,
        }
      : undefined;
    if (!decision.allowed) return refused(decision.reason ?? 'rate', rate, decision.retryMs, false);
    return {
      allowed: true,
      reason: undefined,
      rate,
      retryAfterSeconds: 0,
      local: false,
      release: decision.release,
    };
  }

  #admitLocally(
    caller: CallerBucket,
    policy: BucketPolicy | undefined,
    cap: number | undefined,
    local: boolean,
  ): Admission {
    let rate: RateState | undefined;
    let tat: number | undefined;
    const key = caller.bucketKey;
    if (policy && key !== undefined) {
      const decision = takeToken(this.#buckets.get(key), this.#now(), policy);
      if (!decision.allowed) return refused('rate', rateState(policy, decision), decision.retryMs, local);
      rate = rateState(policy, decision);
      tat = decision.tat;
    }
    let release = NO_RELEASE;
    if (cap !== undefined) {
      const id = caller.id;
      const inFlight = this.#inFlight.get(id) ?? 0;
      if (inFlight >= cap) return refused('concurrency', rate, 1000, local);
      this.#inFlight.set(id, inFlight + 1);
      release = once(() => {
        const left = (this.#inFlight.get(id) ?? 1) - 1;
        if (left <= 0) this.#inFlight.delete(id);
        else this.#inFlight.set(id, left);
      });
    }
    // The token is taken only once the request is admitted: a request refused for concurrency
    // does not also drain the bucket.
    if (key !== undefined && tat !== undefined) this.#buckets.set(key, tat);
    return { allowed: true, reason: undefined, rate, retryAfterSeconds: 0, local, release };
  }

  /** Requests in flight in this process for a tenant (local counting only). */
  inFlight(tenantId: string): number {
    return this.#inFlight.get(tenantId) ?? 0;
  }
}

/** Who spends a bucket: the tenant's credentialed callers, or those known only by its host. */
interface CallerBucket {
  readonly id: string;
  /** Its bucket's key (see `bucketKey`); undefined without a rate limit. */
  readonly bucketKey: string | undefined;
}

/** A tenant's limits as the limiter uses them, worked out once per tenant snapshot. */
interface LimitPlan {
  readonly policy: BucketPolicy | undefined;
  readonly cap: number | undefined;
  readonly authenticated: CallerBucket;
  readonly anonymous: CallerBucket;
}

// Tenant objects are immutable snapshots (a change or a reload makes a new one), so the plan
// can hang off the object: the request path builds no strings and no policy.
const plans = new WeakMap<LimitedTenant, LimitPlan>();

function planOf(tenant: LimitedTenant): LimitPlan {
  let plan = plans.get(tenant);
  if (plan === undefined) {
    const limits = tenant.effective.limits;
    const policy = bucketPolicy(limits);
    const caller = (id: string) => ({ id, bucketKey: policy && bucketKey(id, policy) });
    plan = {
      policy,
      cap: limits.maxConcurrent,
      authenticated: caller(tenant.id),
      anonymous: caller(`${tenant.id}:anonymous`),
    };
    plans.set(tenant, plan);
  }
  return plan;
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
