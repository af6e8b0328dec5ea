import { LRUCache } from 'lru-cache';
import type { CacheStore } from './cache-store.js';

export interface MemoryCacheStoreOptions {
  readonly maxEntries: number;
  readonly maxBytes: number;
  /**
   * Whether invalidations from other processes can be trusted to arrive (the change bus is
   * listening). While they cannot, nothing is served or stored: a delete may have been missed.
   */
  readonly reliable: () => boolean;
}

/**
 * The in-process store: one LRU bounded by entries and by size, a TTL per entry. Keys are
 * `<tenant id>:<generation>:<key>`; dropping a tenant moves it to its next generation, so its old
 * values are unreachable at once and age out of the LRU like any unused entry.
 */
export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory';
  readonly #lru: LRUCache<string, string>;
  /** Only tenants dropped at least once are here (generation 0 otherwise). */
  readonly #generations = new Map<string, number>();
  readonly #reliable: () => boolean;

  constructor(options: MemoryCacheStoreOptions) {
    this.#reliable = options.reliable;
    this.#lru = new LRUCache<string, string>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      // JavaScript strings take up to two bytes a character.
      sizeCalculation: (text, key) => (text.length + key.length) * 2,
    });
  }

  get(tenantId: string, key: string): string | null | undefined {
    if (!this.#reliable()) return undefined;
    return this.#lru.get(this.#key(tenantId, key)) ?? null;
  }

  set(tenantId: string, key: string, text: string, ttlSeconds: number): boolean {
    if (!this.#reliable()) return false;
    this.#lru.set(this.#key(tenantId, key), text, { ttl: ttlSeconds * 1000 });
    return true;
  }

  del(tenantId: string, key: string): boolean {
    this.#lru.delete(this.#key(tenantId, key));
    return true;
  }

  drop(tenantId: string): boolean {
    this.#generations.set(tenantId, (this.#generations.get(tenantId) ?? 0) + 1);
    return true;
  }

  /** Everything, for when invalidations may have been lost. */
  dropAll(): void {
    this.#lru.clear();
    this.#generations.clear();
  }

  #key(tenantId: string, key: string): string {
    return `${tenantId}:${this.#generations.get(tenantId) ?? 0}:${key}`;
  }
}
