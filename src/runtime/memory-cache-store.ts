import { LRUCache } from 'lru-cache';
import type { CacheStore } from './cache-store.js';

export interface MemoryCacheStoreOptions {
  readonly maxEntries: number;
  readonly maxBytes: number;
  /** The part of either bound one tenant may hold (0 to 1). */
  readonly tenantShare: number;
  /**
   * Whether invalidations from other processes can be trusted to arrive (the change bus is
   * listening). While they cannot, nothing is served or stored: a delete may have been missed.
   */
  readonly reliable: () => boolean;
}

/** What one tenant holds in the store. */
interface TenantUsage {
  bytes: number;
  /** Its keys, oldest write first. */
  readonly keys: Set<string>;
}

/**
 * The in-process store: one LRU bounded by entries and by size, a TTL per entry. Keys are
 * `<tenant id>:<generation>:<key>`; dropping a tenant moves it to its next generation, so its old
 * values are unreachable at once and age out of the LRU like any unused entry.
 *
 * One tenant holds at most `tenantShare` of either bound: past it, its own oldest entries make
 * room for its new ones. Without that, a tenant writing large values would evict every other
 * tenant's entries from the shared LRU.
 */
export class MemoryCacheStore implements CacheStore {
  readonly kind = 'memory';
  readonly #lru: LRUCache<string, string>;
  /** Only tenants dropped at least once are here (generation 0 otherwise). */
  readonly #generations = new Map<string, number>();
  readonly #usage = new Map<string, TenantUsage>();
  readonly #reliable: () => boolean;
  readonly #tenantMaxBytes: number;
  readonly #tenantMaxEntries: number;

  constructor(options: MemoryCacheStoreOptions) {
    this.#reliable = options.reliable;
    this.#tenantMaxBytes = Math.max(1, Math.floor(options.maxBytes * options.tenantShare));
    this.#tenantMaxEntries = Math.max(1, Math.floor(options.maxEntries * options.tenantShare));
    this.#lru = new LRUCache<string, string>({
      max: options.maxEntries,
      maxSize: options.maxBytes,
      sizeCalculation: entrySize,
      // Every way out of the LRU (evicted, expired, deleted, overwritten) leaves the tenant's count.
      dispose: (text, key) => this.#forget(key, entrySize(text, key)),
    });
  }

  get(tenantId: string, key: string): string | null | undefined {
    if (!this.#reliable()) return undefined;
    return this.#lru.get(this.#key(tenantId, key)) ?? null;
  }

  set(tenantId: string, key: string, text: string, ttlSeconds: number): boolean {
    if (!this.#reliable()) return false;
    const fullKey = this.#key(tenantId, key);
    const size = entrySize(text, fullKey);
    if (size > this.#tenantMaxBytes) return false;
    this.#lru.delete(fullKey);
    const usage = this.#usage.get(tenantId) ?? { bytes: 0, keys: new Set<string>() };
    for (const oldest of usage.keys) {
      if (usage.bytes + size <= this.#tenantMaxBytes && usage.keys.size < this.#tenantMaxEntries) break;
      this.#lru.delete(oldest);
    }
    this.#lru.set(fullKey, text, { ttl: ttlSeconds * 1000 });
    if (this.#lru.has(fullKey)) {
      // Evicting its last entry above may have removed the record: keep this one.
      this.#usage.set(tenantId, usage);
      usage.bytes += size;
      usage.keys.add(fullKey);
    }
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
    this.#usage.clear();
  }

  /** Bytes and entries a tenant holds now (all generations). */
  usageOf(tenantId: string): { bytes: number; entries: number } {
    const usage = this.#usage.get(tenantId);
    return { bytes: usage?.bytes ?? 0, entries: usage?.keys.size ?? 0 };
  }

  #forget(fullKey: string, size: number): void {
    const tenantId = fullKey.slice(0, fullKey.indexOf(':'));
    const usage = this.#usage.get(tenantId);
    if (!usage?.keys.delete(fullKey)) return;
    usage.bytes -= size;
    if (usage.keys.size === 0) this.#usage.delete(tenantId);
  }

  #key(tenantId: string, key: string): string {
    return `${tenantId}:${this.#generations.get(tenantId) ?? 0}:${key}`;
  }
}

/** JavaScript strings take up to two bytes a character. */
function entrySize(text: string, key: string): number {
  return (text.length + key.length) * 2;
}
