import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisConnection } from './redis-connection.js';

export interface FailureLimiterOptions {
  readonly redis?: RedisConnection | undefined;
  readonly prefix: string;
  /** What is counted, part of the Redis key: `key-failures`, `login-account`, ... */
  readonly name: string;
  /** Failures one subject (an address, an account) may have per window. */
  readonly failures: number;
  readonly windowSeconds: number;
  /** How long a subject that went over stays blocked. */
  readonly blockSeconds: number;
  /** Called for each decision taken by this process alone because Redis did not answer. */
  readonly onFallback?: () => void;
}

/**
 * Brute-force and CPU protection for credential checks: every failed check (a wrong API key, a
 * wrong password) costs a slow hash, so a subject (a client address, an account) that fails too
 * often is refused before it is hashed again, for `blockSeconds`. Shared by every process through
 * Redis (rate-limiter-flexible); while Redis does not answer, each process counts on its own with
 * half the allowance, so a Redis outage never loosens the protection across a few processes.
 *
 * @example
 * const wait = await failures.blockedFor(request.ip);
 * if (wait > 0) throw rateLimited(wait);
 * if (!valid) await failures.recordFailure(request.ip);
 */
export class FailureLimiter {
  readonly #limiter: RateLimiterMemory | RateLimiterRedis;
  readonly #points: number;
  readonly #redis: RedisConnection | undefined;
  readonly #onFallback: () => void;

  constructor(options: FailureLimiterOptions) {
    this.#points = options.failures;
    this.#redis = options.redis;
    this.#onFallback = options.onFallback ?? (() => undefined);
    const shape = {
      keyPrefix: `${options.prefix}${options.name}`,
      points: options.failures,
      duration: options.windowSeconds,
      blockDuration: options.blockSeconds,
    };
    this.#limiter = options.redis
      ? new RateLimiterRedis({
          ...shape,
          storeClient: options.redis.client,
          rejectIfRedisNotReady: true,
          insuranceLimiter: new RateLimiterMemory({
            ...shape,
            points: Math.max(1, Math.floor(options.failures / 2)),
          }),
        })
      : new RateLimiterMemory(shape);
  }

  /** Milliseconds the subject must still wait, 0 when it may try. */
  async blockedFor(subject: string): Promise<number> {
    this.#noteFallback();
    const state = await this.#limiter.get(subject).catch(() => null);
    if (!state) return 0;
    const allowance = this.#redis?.up === false ? Math.max(1, Math.floor(this.#points / 2)) : this.#points;
    return state.consumedPoints >= allowance ? Math.max(1, state.msBeforeNext) : 0;
  }

  /** Counts one failed check; resolves with the milliseconds to wait when it went over. */
  async recordFailure(subject: string): Promise<number> {
    this.#noteFallback();
    try {
      await this.#limiter.consume(subject);
      return 0;
    } catch (refusal) {
      return refusal instanceof RateLimiterRes ? Math.max(1, refusal.msBeforeNext) : 0;
    }
  }

  /** Forgets a subject's failures (a successful login). */
  async reset(subject: string): Promise<void> {
    await this.#limiter.delete(subject).catch(() => undefined);
  }

  #noteFallback(): void {
    if (this.#redis && !this.#redis.up) this.#onFallback();
  }
}
