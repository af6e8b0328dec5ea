import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible';
import type { RedisConnection } from './redis-connection.js';

export interface KeyFailureLimiterOptions {
  readonly redis?: RedisConnection | undefined;
  readonly prefix: string;
  /** Failed checks one client address may make per minute. */
  readonly failuresPerMinute: number;
  /** How long an address that went over stays blocked. */
  readonly blockSeconds: number;
  /** Called for each decision taken by this process alone because Redis did not answer. */
  readonly onFallback?: () => void;
}

/**
 * Brute-force and CPU protection for credential checks: every failed check (an unknown or wrong
 * API key) costs a slow hash, so a client address that fails too often is refused before it is
 * hashed again, for `blockSeconds`. Shared by every process through Redis (rate-limiter-flexible);
 * while Redis does not answer, each process counts on its own with half the allowance, so a
 * Redis outage never loosens the protection across a fleet of a few processes.
 *
 * @example
 * const wait = await failures.blockedFor(request.ip);
 * if (wait > 0) throw rateLimited(wait);
 * if (!valid) await failures.recordFailure(request.ip);
 */
export class KeyFailureLimiter {
  readonly #limiter: RateLimiterMemory | RateLimiterRedis;
  readonly #points: number;
  readonly #redis: RedisConnection | undefined;
  readonly #onFallback: () => void;

  constructor(options: KeyFailureLimiterOptions) {
    this.#points = options.failuresPerMinute;
    this.#redis = options.redis;
    this.#onFallback = options.onFallback ?? (() => undefined);
    const shape = {
      keyPrefix: `${options.prefix}key-failures`,
      points: options.failuresPerMinute,
      duration: 60,
      blockDuration: options.blockSeconds,
    };
    this.#limiter = options.redis
      ? new RateLimiterRedis({
          ...shape,
          storeClient: options.redis.client,
          rejectIfRedisNotReady: true,
          insuranceLimiter: new RateLimiterMemory({
            ...shape,
            points: Math.max(1, Math.floor(options.failuresPerMinute / 2)),
          }),
        })
      : new RateLimiterMemory(shape);
  }

  /** Milliseconds the address must still wait, 0 when it may try. */
  async blockedFor(address: string): Promise<number> {
    this.#noteFallback();
    const state = await this.#limiter.get(address).catch(() => null);
    if (!state) return 0;
    const allowance = this.#redis?.up === false ? Math.max(1, Math.floor(this.#points / 2)) : this.#points;
    return state.consumedPoints >= allowance ? Math.max(1, state.msBeforeNext) : 0;
  }

  /** Counts one failed check; resolves with the milliseconds to wait when it went over. */
  async recordFailure(address: string): Promise<number> {
    this.#noteFallback();
    try {
      await this.#limiter.consume(address);
      return 0;
    } catch (refusal) {
      return refusal instanceof RateLimiterRes ? Math.max(1, refusal.msBeforeNext) : 0;
    }
  }

  #noteFallback(): void {
    if (this.#redis && !this.#redis.up) this.#onFallback();
  }
}
