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

/** One check admitted by `FailureLimiter.begin`. */
export interface FailureTry {
  readonly waitMs: number;
  /** The check is over; `failed` counts it as a failure. */
  readonly end: (failed: boolean) => Promise<void>;
}

const NOTHING = async (): Promise<void> => undefined;

/**
 * Brute-force and CPU protection for credential checks: every failed check (a wrong API key, a
 * wrong password) costs a slow hash, so a subject (a client address, an account) that fails too
 * often is refused before it is hashed again, for `blockSeconds`. Shared by every process through
 * Redis (rate-limiter-flexible); while Redis does not answer, each process counts on its own with
 * half the allowance, so a Redis outage never loosens the protection across a few processes.
 *
 * @example
 * const attempt = await failures.begin(request.ip);
 * if (attempt.waitMs > 0) throw rateLimited(attempt.waitMs);
 * await attempt.end(!(await check()));
 */
export class FailureLimiter {
  readonly #limiter: RateLimiterMemory | RateLimiterRedis;
  readonly #points: number;
  readonly #redis: RedisConnection | undefined;
  readonly #onFallback: () => void;
  /** Checks admitted by `begin` and not ended, by subject (this process's). */
  readonly #running = new Map<string, number>();

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

  /**
   * Admits one slow check for `subject`, or says how long to wait (`waitMs` > 0). Failures are
   * counted when a check fails (`end(true)`), and checks still running count against what is left
   * of the allowance: a burst of checks started together can no longer all pass before the first
   * failure is recorded, each paying a slow hash. A subject over its allowance waits for its
   * block; one whose allowance is taken by running checks only for them (about a second), and is
   * not blocked for it: concurrent checks that succeed cost nothing.
   */
  async begin(subject: string): Promise<FailureTry> {
    this.#noteFallback();
    const state = await this.#limiter.get(subject).catch(() => null);
    const failures = state?.consumedPoints ?? 0;
    const allowance = this.#allowance();
    if (state && failures >= allowance) return { waitMs: Math.max(1, state.msBeforeNext), end: NOTHING };
    const running = this.#running.get(subject) ?? 0;
    if (failures + running >= allowance) return { waitMs: 1_000, end: NOTHING };
    this.#running.set(subject, running + 1);
    let ended = false;
    return {
      waitMs: 0,
      end: async (failed) => {
        if (ended) return;
        ended = true;
        const left = (this.#running.get(subject) ?? 1) - 1;
        if (left > 0) this.#running.set(subject, left);
        else this.#running.delete(subject);
        if (failed) await this.#recordFailure(subject);
      },
    };
  }

  #allowance(): number {
    return this.#redis?.up === false ? Math.max(1, Math.floor(this.#points / 2)) : this.#points;
  }

  /** Counts one failed check; resolves with the milliseconds to wait when it went over. */
  async #recordFailure(subject: string): Promise<number> {
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
