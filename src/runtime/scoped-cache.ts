import { LRUCache } from 'lru-cache';
import { TenantryError } from '../errors.js';
import type { Tenant } from '../tenants/tenant.js';
import type { ChangeBus } from './change-bus.js';
import type { RedisConnection } from './redis-connection.js';

/** Where cached values live: this process, or Redis shared by every process. */
export type CacheStoreKind = 'memory' | 'redis';

export interface ScopedCacheSettings {
  readonly store: CacheStoreKind;
  readonly defaultTtlSeconds: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** Prefix of the Redis keys. */
  readonly prefix: string;
}

export type CacheOutcome = 'hit' | 'miss' | 'foreign' | 'unavailable';

export interface ScopedCacheOptions {
  readonly settings: ScopedCacheSettings;
  readonly bus: ChangeBus;
  readonly redis: RedisConnection | undefined;
  /** Sends a cache invalidation to the other processes (memory store on a shared database). */
  readonly broadcast: (change: { tenantId: string; key?: string }) => Promise<void>;
  readonly onOutcome?: (outcome: CacheOutcome) => void;
  readonly onBackgroundError?: (error: unknown) => void;
}

/** What one tenant's code sees: keys are its own, values come back only to it. */
export interface TenantCache {
  get<T = unknown>(key: string): Promise<T | undefined>;
  set(key: string, value: unknown, options?: { ttlSeconds?: number }): Promise<void>;
  del(key: string): Promise<void>;
  /** The cached value, or `fn()`'s, cached; concurrent callers in this process share one `fn()`. */
  wrap<T>(key: string, ttlSeconds: number | undefined, fn: () => Promise<T>): Promise<T>;
  /** Drops every value of the tenant. */
  clear(): Promise<void>;
}

interface Envelope {
  readonly t: string;
  readonly v: unknown;
}

const MAX_KEY_LENGTH = 512;
const MAX_TTL_SECONDS = 7 * 86_400;

/**
 * The tenant-scoped cache of library users (`request.cache`) and jobs (`tenantry.cache.forTenant`).
 * Every key is stored under its tenant's id (a UUID: fixed length, no separator in it, so no user
 * key can reach into another tenant's namespace), and every value carries the id of the tenant
 * that wrote it: a read that finds another tenant's id is a miss. In this process (a bounded
 * LRU; deletes reach the other processes through NOTIFY) or in Redis (shared; while Redis is down
 * reads miss and writes are skipped, nothing throws).
 */
export class ScopedCache {
  readonly #options: ScopedCacheOptions;
  readonly #memory: LRUCache<string, string> | undefined;
  readonly #inFlight = new Map<string, Promise<unknown>>();

  constructor(options: ScopedCacheOptions) {
    this.#options = options;
    const { settings } = options;
    if (settings.store === 'memory') {
      this.#memory = new LRUCache<string, string>({
        max: settings.maxEntries,
        maxSize: settings.maxBytes,
        sizeCalculation: (value, key) => value.length * 2 + key.length * 2,
        ttlAutopurge: false,
      });
      options.bus.subscribe((change) => {
        if (change === 'all') this.#memory?.clear();
        else if (change.kind === 'cache') {
          if (change.key === undefined) this.#dropTenant(change.tenantId);
          else this.#memory?.delete(this.#storeKey(change.tenantId, change.key));
        }
        // Tenant changes leave its values alone: a deleted tenant is never resolved again, and
        // its values age out of the LRU.
      });
    }
  }

  get store(): CacheStoreKind {
    return this.#options.settings.store;
  }

  /** The cache of one tenant. */
  forTenant(tenant: Pick<Tenant, 'id'>): TenantCache {
    const tenantId = tenant.id;
    return {
      get: (key) => this.#get(tenantId, key),
      set: (key, value, options) => this.#set(tenantId, key, value, options?.ttlSeconds),
      del: (key) => this.#del(tenantId, key),
      wrap: (key, ttlSeconds, fn) => this.#wrap(tenantId, key, ttlSeconds, fn),
      clear: () => this.#clear(tenantId),
    };
  }

  async #get<T>(tenantId: string, key: string): Promise<T | undefined> {
    const storeKey = this.#storeKey(tenantId, key);
    let raw: string | null | undefined;
    if (this.#memory) {
      raw = this.#options.bus.reliable ? this.#memory.get(storeKey) : undefined;
    } else {
      const redis = this.#options.redis;
      if (!redis?.up) return this.#outcome('unavailable');
      raw = await redis.client.get(storeKey).catch(() => undefined);
      if (raw === undefined) return this.#outcome('unavailable');
    }
    if (raw === null || raw === undefined) return this.#outcome('miss');
    const envelope = JSON.parse(raw) as Envelope;
    if (envelope.t !== tenantId) return this.#outcome('foreign');
    this.#options.onOutcome?.('hit');
    return envelope.v as T;
  }

  async #set(tenantId: string, key: string, value: unknown, ttlSeconds: number | undefined): Promise<void> {
    const storeKey = this.#storeKey(tenantId, key);
    const ttl = this.#ttl(ttlSeconds);
    if (value === undefined)
      throw new TenantryError('validation_failed', 'a cached value cannot be undefined');
    const raw = JSON.stringify({ t: tenantId, v: value } satisfies Envelope);
    if (raw.length * 2 > this.#options.settings.maxBytes / 10) {
      throw new TenantryError('validation_failed', 'the value is too large to cache', { field: 'value' });
    }
    if (this.#memory) {
      this.#memory.set(storeKey, raw, { ttl: ttl * 1000 });
      return;
    }
    const redis = this.#options.redis;
    if (!redis?.up) return;
    await redis.client.set(storeKey, raw, 'EX', ttl).catch(this.#options.onBackgroundError);
  }

  async #del(tenantId: string, key: string): Promise<void> {
    const storeKey = this.#storeKey(tenantId, key);
    if (this.#memory) {
      this.#memory.delete(storeKey);
      await this.#options.broadcast({ tenantId, key });
      return;
    }
    await this.#options.redis?.client.del(storeKey).catch(this.#options.onBackgroundError);
  }

  async #clear(tenantId: string): Promise<void> {
    if (this.#memory) {
      this.#dropTenant(tenantId);
      await this.#options.broadcast({ tenantId });
      return;
    }
    const redis = this.#options.redis;
    if (!redis?.up) return;
    const pattern = `${this.#namespace(tenantId)}*`;
    let cursor = '0';
    do {
      const [next, keys] = await redis.client.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      if (keys.length > 0) await redis.client.del(...keys);
      cursor = next;
    } while (cursor !== '0');
  }

  async #wrap<T>(
    tenantId: string,
    key: string,
    ttlSeconds: number | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const cached = await this.#get<T>(tenantId, key);
    if (cached !== undefined) return cached;
    const storeKey = this.#storeKey(tenantId, key);
    const running = this.#inFlight.get(storeKey);
    if (running) return running as Promise<T>;
    const computing = (async () => {
      const value = await fn();
      if (value !== undefined) await this.#set(tenantId, key, value, ttlSeconds);
      return value;
    })().finally(() => this.#inFlight.delete(storeKey));
    this.#inFlight.set(storeKey, computing);
    return computing;
  }

  #dropTenant(tenantId: string): void {
    if (!this.#memory) return;
    const namespace = this.#namespace(tenantId);
    for (const key of this.#memory.keys()) if (key.startsWith(namespace)) this.#memory.delete(key);
  }

  /** `{tenantId}` is a Redis Cluster hash tag: a tenant's keys share a slot. */
  #namespace(tenantId: string): string {
    return `${this.#options.settings.prefix}cache:{${tenantId}}:`;
  }

  #storeKey(tenantId: string, key: string): string {
    if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
      throw new TenantryError(
        'validation_failed',
        `a cache key is a string of 1 to ${MAX_KEY_LENGTH} characters`,
        {
          field: 'key',
        },
      );
    }
    return `${this.#namespace(tenantId)}${key}`;
  }

  #ttl(ttlSeconds: number | undefined): number {
    const ttl = ttlSeconds ?? this.#options.settings.defaultTtlSeconds;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_SECONDS) {
      throw new TenantryError(
        'validation_failed',
        `ttlSeconds must be a whole number from 1 to ${MAX_TTL_SECONDS}`,
        {
          field: 'ttlSeconds',
        },
      );
    }
    return ttl;
  }

  #outcome(outcome: CacheOutcome): undefined {
    this.#options.onOutcome?.(outcome);
    return undefined;
  }
}
