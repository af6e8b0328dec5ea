import { Redis } from 'ioredis';

export interface RedisConnectionOptions {
  /** Called once per transition: false when Redis stops answering, true when it is back. */
  readonly onStateChange?: (up: boolean, reason?: string) => void;
  /** A command that takes longer fails, so a hung Redis cannot hold requests (default 300 ms). */
  readonly commandTimeoutMs?: number;
}

/**
 * The one Redis connection of a process, shared by the limits and the cache. Redis is an
 * accelerator, never a dependency of correctness: commands fail at once while it is down (no
 * offline queue, so nothing piles up in memory), callers fall back to what one process can do,
 * and the client reconnects by itself with a capped backoff.
 *
 * @example
 * const redis = new RedisConnection(process.env.REDIS_URL!, { onStateChange: (up) => log(up) });
 * if (redis.up) await redis.client.set('k', 'v');
 */
export class RedisConnection {
  readonly client: Redis;
  #up = false;
  #closed = false;

  constructor(url: string, options: RedisConnectionOptions = {}) {
    this.client = new Redis(url, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      maxRetriesPerRequest: 0,
      connectTimeout: 2_000,
      commandTimeout: options.commandTimeoutMs ?? 300,
      retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 2_000),
      // A Redis that answers but lost its scripts (restart) is handled by the callers' fallbacks.
      lazyConnect: false,
    });
    const change = (up: boolean, reason?: string) => {
      if (up === this.#up || this.#closed) return;
      this.#up = up;
      options.onStateChange?.(up, reason);
    };
    this.client.on('ready', () => change(true));
    this.client.on('close', () => change(false, 'connection closed'));
    this.client.on('end', () => change(false, 'connection ended'));
    // ioredis emits 'error' on every failed reconnect; without a listener Node would crash.
    this.client.on('error', (error: Error) => change(false, error.message));
  }

  /** Whether the last thing Redis did was answer. */
  get up(): boolean {
    return this.#up;
  }

  /** Resolves when connected, or false after `timeoutMs` (the server starts either way). */
  async ready(timeoutMs: number): Promise<boolean> {
    if (this.#up) return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.client.off('ready', onReady);
        resolve(false);
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.client.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#up = false;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
