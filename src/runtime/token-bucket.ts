/** The limits of a tenant that shape its request rate (a tenant's `limits` has them). */
export interface RateLimits {
  readonly requestsPerSecond?: number | undefined;
  readonly burst?: number | undefined;
  readonly maxConcurrent?: number | undefined;
}

/**
 * A token bucket as GCRA (the generic cell rate algorithm): the whole state of a bucket is one
 * number, the theoretical arrival time (TAT) of the next request. That makes it exact (a
 * saturating client gets `requestsPerSecond`, never more, and up to `burst` at once after a
 * quiet spell) and atomic in Redis with a single key. The Lua script in `tenant-limiter.ts`
 * computes the same thing against Redis's clock.
 */
export interface BucketPolicy {
  /** Milliseconds one token takes to come back (1000 / requestsPerSecond). */
  readonly intervalMs: number;
  /** Tokens the bucket holds when full: the most requests that may arrive at once. */
  readonly burst: number;
  /** A short description for the RateLimit-Policy header and the Redis key. */
  readonly name: string;
}

export interface BucketDecision {
  readonly allowed: boolean;
  /** The next TAT to store when allowed; unchanged when refused. */
  readonly tat: number;
  /** Whole tokens left after this request. */
  readonly remaining: number;
  /** Milliseconds until the bucket is full again. */
  readonly resetMs: number;
  /** Milliseconds until a request would be allowed (0 when allowed). */
  readonly retryMs: number;
}

/** A request refused for good (requestsPerSecond 0) waits this long before asking again. */
export const CLOSED_RETRY_MS = 60_000;

/**
 * The bucket a tenant's limits describe, or undefined when it has no rate limit. `burst`
 * defaults to one second of requests (at least one).
 */
export function bucketPolicy(limits: RateLimits): BucketPolicy | undefined {
  const rate = limits.requestsPerSecond;
  if (rate === undefined) return undefined;
  const burst = Math.max(1, limits.burst ?? Math.ceil(rate));
  if (rate <= 0) return { intervalMs: Number.POSITIVE_INFINITY, burst: 0, name: 'closed' };
  return { intervalMs: 1000 / rate, burst, name: `${burst};w=${formatSeconds(burst / rate)}` };
}

/**
 * The key of a caller's bucket under a policy: a changed policy starts a fresh bucket. The same
 * key names the bucket in this process and the shared batches taken from Redis.
 */
export function bucketKey(callerId: string, policy: BucketPolicy): string {
  return `${callerId}|${policy.name}`;
}

function formatSeconds(seconds: number): string {
  return Number.isInteger(seconds) ? String(seconds) : seconds.toFixed(3).replace(/0+$/, '');
}

/** Takes one token from a bucket whose stored TAT is `tat` (undefined: a full bucket). */
export function takeToken(tat: number | undefined, now: number, policy: BucketPolicy): BucketDecision {
  if (policy.burst === 0) {
    return { allowed: false, tat: tat ?? now, remaining: 0, resetMs: 0, retryMs: CLOSED_RETRY_MS };
  }
  const base = tat === undefined || tat < now ? now : tat;
  const next = base + policy.intervalMs;
  const allowAt = next - policy.burst * policy.intervalMs;
  if (now < allowAt) {
    return { allowed: false, tat: base, remaining: 0, resetMs: base - now, retryMs: allowAt - now };
  }
  return {
    allowed: true,
    tat: next,
    remaining: Math.floor((now - allowAt) / policy.intervalMs),
    resetMs: next - now,
    retryMs: 0,
  };
}
