import { randomBytes } from 'node:crypto';
import { TenantryError } from '../errors.js';
import type { CacheStore, CacheStoreKind } from './cache-store.js';
import type { Change, ChangeBus } from './change-bus.js';
import type { EngineLogger } from './engine-logger.js';
import { MemoryCacheStore } from './memory-cache-store.js';
import { RedisCacheStore } from './redis-cache-store.js';
import type { RedisConnection } from './redis-connection.js';

export type { CacheStoreKind } from './cache-store.js';

export interface ScopedCacheSettings {
  readonly store: CacheStoreKind;
  readonly defaultTtlSeconds: number;
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly maxTenantShare: number;
  /** Prefix of the Redis keys (`<prefix>cache:...`). */
  readonly prefix: string;
}

/** How a read ended: `foreign` is a value that names another tenant (refused, a miss). */
export type CacheOutcome = 'hit' | 'miss' | 'foreign' | 'unavailable';

/** A write the store could not take (Redis down, or invalidations possibly lost). */
export type CacheSkip = 'set' | 'del' | 'clear';

export interface ScopedCacheOptions {
  readonly settings: ScopedCacheSettings;
  readonly bus: ChangeBus;
  /** The `redis` store's connection; without one (an engine opened without Redis) it is down. */
  readonly redis: RedisConnection | undefined;
  /** Sends a change to the other processes (in-process store on a shared database). */
  readonly broadcast: (change: Extract<Change, { kind: 'cache' }>) => Promise<void>;
  readonly onOutcome?: (outcome: CacheOutcome) => void;
  readonly onSkipped?: (operation: CacheSkip) => void;
  readonly logger?: EngineLogger;
}

/**
 * One tenant's cache: its keys are its own and its values come back only to it. Values are JSON,
 * copied in and out (mutating a value you got never changes the cached one). A store that is
 * unreachable never makes these throw: reads miss, writes are skipped.
 *
 * @example
 * scope.get('/report', async (request) =>
 *   request.cache.wrap('monthly-report', 300, () => buildReport(request.db)));
 */
export interface TenantCache {
  /**
   * The cached value, or undefined.
   *
   * @example
   * const profile = await request.cache.get<{ name: string }>('profile');
   */
  get<T = unknown>(key: string): Promise<T | undefined>;
  /**
   * Caches a JSON value for `ttlSeconds` (default `cache.defaultTtlSeconds`).
   *
   * @example
   * await request.cache.set('last-import', { at: Date.now() }, { ttlSeconds: 3600 });
   */
  set(key: string, value: unknown, options?: { ttlSeconds?: number }): Promise<void>;
  /**
   * Forgets a value, in every process.
   *
   * @example
   * await request.cache.del('profile');
   */
  del(key: string): Promise<void>;
  /**
   * The cached value, or `fn()`'s, cached for `ttlSeconds` (undefined: the default). Concurrent
   * callers in this process share one `fn()`; a `del` or `clear` while it runs keeps its result
   * out of the cache.
   *
   * @example
   * const plans = await request.cache.wrap('plans', 60, () => loadPlans(request.db));
   */
  wrap<T>(key: string, ttlSeconds: number | undefined, fn: () => Promise<T>): Promise<T>;
  /**
   * Forgets every value of the tenant, in every process.
   *
   * @example
   * await request.cache.clear();
   */
  clear(): Promise<void>;
}

const MAX_KEY_LENGTH = 512;
/** The longest TTL a value may have (the config's `defaultTtlSeconds` has the same bound). */
export const MAX_CACHE_TTL_SECONDS = 7 * 86_400;
const MAX_VALUE_BYTES = 1024 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Flight {
  readonly promise: Promise<string | undefined>;
  /** A delete or clear happened while `fn` ran: its result must not be cached. */
  stale: boolean;
}

/**
 * The tenant-scoped cache of library users (`request.cache`) and jobs (`tenantry.cache.forTenant`).
 *
 * - Namespaced: each key is stored under its tenant's id, a UUID (fixed length, nothing but hex
 *   and dashes), so the encoding is injective: no key a tenant chooses reaches another tenant's
 *   namespace, whatever it contains.
 * - Checked on read: each value is stored in an envelope naming its tenant; a read that finds
 *   another tenant (or no envelope) is refused as a miss, counted and logged.
 * - Stores: in this process (a bounded LRU; deletes and clears reach the other processes through
 *   the change bus, and nothing is served while the bus may have missed one) or in Redis (shared,
 *   so a delete is seen at once everywhere; while Redis is down, reads miss and writes are skipped).
 * - A deleted tenant's values are dropped (the registry announces it with the deletion).
 *
 * @example
 * const cache = tenantry.cache.forTenant(tenant);
 * await cache.set('greeting', { text: 'hello' }, { ttlSeconds: 60 });
 */
export class ScopedCache {
  readonly #options: ScopedCacheOptions;
  readonly #store: CacheStore;
  readonly #memory: MemoryCacheStore | undefined;
  readonly #maxValueBytes: number;
  readonly #inFlight = new Map<string, Flight>();
  /** Marks this process's own broadcasts, which it applied already. */
  readonly #origin = randomBytes(8).toString('hex');

  constructor(options: ScopedCacheOptions) {
    this.#options = options;
    const { settings, redis } = options;
    if (settings.store === 'redis') {
      this.#store = new RedisCacheStore(redis, {
        prefix: settings.prefix,
        maxTtlSeconds: MAX_CACHE_TTL_SECONDS,
      });
      this.#maxValueBytes = MAX_VALUE_BYTES;
    } else {
      this.#memory = new MemoryCacheStore({
        maxEntries: settings.maxEntries,
        maxBytes: settings.maxBytes,
        tenantShare: settings.maxTenantShare,
        reliable: () => options.bus.reliable,
      });
      this.#store = this.#memory;
      // A value must also fit in one tenant's share (its characters count two bytes there).
      this.#maxValueBytes = Math.min(
        MAX_VALUE_BYTES,
        Math.floor(settings.maxBytes / 10),
        Math.floor((settings.maxBytes * settings.maxTenantShare) / 2),
      );
    }
    options.bus.subscribe((change) => this.#onChange(change));
  }

  get store(): CacheStoreKind {
    return this.#store.kind;
  }

  /**
   * The cache of one tenant: for jobs and scripts (`request.cache` is this for the request's
   * tenant).
   *
   * @example
   * await tenantry.withTenant(tenantId, async (db, { cache }) => cache.del('report'));
   * const cache = tenantry.cache.forTenant(await tenantry.tenants.get('acme'));
   */
  forTenant(tenant: { readonly id: string }): TenantCache {
    const tenantId = tenant.id;
    if (typeof tenantId !== 'string' || !UUID.test(tenantId)) {
      throw new TenantryError('validation_failed', 'a tenant id is a UUID', { field: 'tenant' });
    }
    // Async, so a refused argument rejects the promise like any other failure.
    return {
      get: async (key) => this.#get(tenantId, checkKey(key)),
      set: async (key, value, options) =>
        this.#set(tenantId, checkKey(key), this.#serialise(value), this.#ttl(options?.ttlSeconds)),
      del: async (key) => this.#del(tenantId, checkKey(key)),
      wrap: async (key, ttlSeconds, fn) => this.#wrap(tenantId, checkKey(key), this.#ttl(ttlSeconds), fn),
      clear: async () => this.#clear(tenantId),
    };
  }

  async #get<T>(tenantId: string, key: string): Promise<T | undefined> {
    const raw = await this.#store.get(tenantId, key);
    if (raw === undefined) return this.#outcome('unavailable');
    if (raw === null) return this.#outcome('miss');
    const value = openEnvelope(raw, tenantId);
    if (value === REFUSED) {
      this.#options.logger?.warn(
        { tenantId, key: key.slice(0, 64) },
        'a cached value that does not belong to the reading tenant was refused',
      );
      return this.#outcome('foreign');
    }
    this.#options.onOutcome?.('hit');
    return value as T;
  }

  async #set(tenantId: string, key: string, json: string, ttlSeconds: number): Promise<void> {
    const stored = await this.#store.set(tenantId, key, envelope(tenantId, json), ttlSeconds);
    if (!stored) this.#options.onSkipped?.('set');
  }

  async #del(tenantId: string, key: string): Promise<void> {
    this.#forgetFlights(tenantId, key);
    if (!(await this.#store.del(tenantId, key))) this.#options.onSkipped?.('del');
    if (this.#memory) await this.#announce({ kind: 'cache', tenantId, key, origin: this.#origin }, 'del');
  }

  /**
   * Tells the other processes; a database that cannot take the notification skips the write for
   * them (counted and logged like a store that is down), it does not fail the caller's request.
   */
  async #announce(change: Extract<Change, { kind: 'cache' }>, operation: CacheSkip): Promise<void> {
    try {
      await this.#options.broadcast(change);
    } catch (error) {
      this.#options.onSkipped?.(operation);
      this.#options.logger?.warn({ err: error, operation }, 'cache invalidation not sent to other processes');
    }
  }

  async #clear(tenantId: string): Promise<void> {
    this.#forgetFlights(tenantId);
    if (!(await this.#store.drop(tenantId))) this.#options.onSkipped?.('clear');
    if (this.#memory) await this.#announce({ kind: 'cache', tenantId, origin: this.#origin }, 'clear');
  }

  async #wrap<T>(tenantId: string, key: string, ttlSeconds: number, fn: () => Promise<T>): Promise<T> {
    const cached = await this.#get<T>(tenantId, key);
    if (cached !== undefined) return cached;
    const flightKey = `${tenantId}:${key}`;
    let flight = this.#inFlight.get(flightKey);
    if (!flight) {
      const started: Flight = {
        stale: false,
        promise: fn().then(async (value) => {
          if (value === undefined) return undefined;
          const json = this.#serialise(value);
          if (!started.stale) await this.#set(tenantId, key, json, ttlSeconds);
          return json;
        }),
      };
      flight = started;
      this.#inFlight.set(flightKey, started);
      const settled = () => {
        if (this.#inFlight.get(flightKey) === started) this.#inFlight.delete(flightKey);
      };
      started.promise.then(settled, settled);
    }
    const json = await flight.promise;
    // Each caller gets its own copy, shaped as a later read would give it.
    return (json === undefined ? undefined : JSON.parse(json)) as T;
  }

  #onChange(change: Change | 'all'): void {
    if (change === 'all') {
      for (const flight of this.#inFlight.values()) flight.stale = true;
      this.#inFlight.clear();
      this.#memory?.dropAll();
      return;
    }
    if (change.kind !== 'cache' || change.origin === this.#origin) return;
    this.#forgetFlights(change.tenantId, change.key);
    if (this.#memory) {
      if (change.key === undefined) this.#memory.drop(change.tenantId);
      else this.#memory.del(change.tenantId, change.key);
    } else if (change.key === undefined) {
      // A deleted tenant (the only keyless change a shared store hears of): every process that
      // hears it drops the tenant's generation; the first one to reach Redis does the work.
      void this.#store.drop(change.tenantId);
    }
  }

  /** In-flight `wrap`s of the key (or of the whole tenant) must not cache what they compute. */
  #forgetFlights(tenantId: string, key?: string): void {
    if (this.#inFlight.size === 0) return;
    if (key !== undefined) {
      const flightKey = `${tenantId}:${key}`;
      const flight = this.#inFlight.get(flightKey);
      if (flight) {
        flight.stale = true;
        this.#inFlight.delete(flightKey);
      }
      return;
    }
    const prefix = `${tenantId}:`;
    for (const [flightKey, flight] of this.#inFlight) {
      if (!flightKey.startsWith(prefix)) continue;
      flight.stale = true;
      this.#inFlight.delete(flightKey);
    }
  }

  #serialise(value: unknown): string {
    let json: string | undefined;
    try {
      json = JSON.stringify(value);
    } catch (error) {
      throw new TenantryError(
        'validation_failed',
        `a cached value must be JSON: ${error instanceof Error ? error.message : String(error)}`,
        { field: 'value' },
      );
    }
    if (json === undefined) {
      throw new TenantryError('validation_failed', 'a cached value must be JSON (not undefined)', {
        field: 'value',
      });
    }
    if (json.length > this.#maxValueBytes || Buffer.byteLength(json) > this.#maxValueBytes) {
      throw new TenantryError(
        'validation_failed',
        `a cached value may take ${this.#maxValueBytes} bytes as JSON at most`,
        { field: 'value' },
      );
    }
    return json;
  }

  #ttl(ttlSeconds: number | undefined): number {
    const ttl = ttlSeconds ?? this.#options.settings.defaultTtlSeconds;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_CACHE_TTL_SECONDS) {
      throw new TenantryError(
        'validation_failed',
        `ttlSeconds must be a whole number from 1 to ${MAX_CACHE_TTL_SECONDS}`,
        { field: 'ttlSeconds' },
      );
    }
    return ttl;
  }

  #outcome(outcome: CacheOutcome): undefined {
    this.#options.onOutcome?.(outcome);
    return undefined;
  }
}

function checkKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new TenantryError(
      'validation_failed',
      `a cache key is a string of 1 to ${MAX_KEY_LENGTH} characters`,
      {
        field: 'key',
      },
    );
  }
  return key;
}

const REFUSED = Symbol('refused');

/** The tenant id is a checked UUID and `json` came from JSON.stringify: the result is JSON. */
function envelope(tenantId: string, json: string): string {
  return `{"t":"${tenantId}","v":${json}}`;
}

/** The value, or REFUSED when the text is not an envelope of this tenant. */
function openEnvelope(raw: string, tenantId: string): unknown {
  try {
    const parsed = JSON.parse(raw) as { t?: unknown; v?: unknown } | null;
    if (parsed === null || typeof parsed !== 'object' || parsed.t !== tenantId || !('v' in parsed))
      return REFUSED;
    return parsed.v;
  } catch {
    return REFUSED;
  }
}
