import { LRUCache } from 'lru-cache';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { Tenant } from '../tenants/tenant.js';

const MISSING = Symbol('missing');
type Lookup = string | typeof MISSING;

export interface TenantCacheOptions {
  readonly maxTenants?: number;
  /**
   * How old a cached tenant may be before it is read again: past it, the tenant is still served
   * while one batched query in the background brings it up to date (default 60 s).
   */
  readonly ttlMs?: number;
  /**
   * Reads tenants by id for the background refresh, all in one query; absent, entries expire at
   * `ttlMs` and the next request reads its tenant itself.
   */
  readonly refresh?: (ids: readonly string[]) => Promise<readonly Tenant[]>;
  /** How long refreshes are gathered before their query runs (default 250 ms). */
  readonly refreshBatchMs?: number;
  readonly onRefreshError?: (error: unknown) => void;
}

/** A cached tenant and when it is due to be read again (epoch ms). */
interface TenantEntry {
  readonly tenant: Tenant;
  readonly refreshAt: number;
}

/** How long refreshes pause after one failed. */
const REFRESH_RETRY_MS = 5_000;

/** Ids read per refresh query at most. */
const REFRESH_CHUNK = 1_000;

/**
 * Tenants, and the host and slug lookups that lead to them, kept in memory for the resolution
 * hot path. Any tenant change empties the host and slug maps (changes are rare, lookups are not),
 * and nothing is served from here while the change bus may have missed a notification.
 *
 * Notifications keep entries current; age only backs them up (a change written around Tenantry).
 * A tenant older than `ttlMs` is refreshed ahead: requests keep being answered from memory while
 * the tenants due, gathered for a moment, are read in one query. Without that, at 10,000 busy
 * tenants every minute brought 10,000 reads of one row each, each on some request's path: a
 * quarter more transactions per request (the spread-cost benchmark). An entry nobody asks for
 * expires after ten times `ttlMs`, and so do host and slug lookups (every tenant change empties
 * those anyway).
 */
export class TenantCache {
  readonly #bus: ChangeBus;
  readonly #byId: LRUCache<string, TenantEntry>;
  readonly #hosts: LRUCache<string, Lookup>;
  readonly #slugs: LRUCache<string, Lookup>;
  readonly #ttlMs: number;
  /** How long an entry is kept at all (longer than ttlMs when refreshed ahead). */
  readonly #keptMs: number;
  readonly #refresh: TenantCacheOptions['refresh'];
  readonly #refreshBatchMs: number;
  readonly #onRefreshError: (error: unknown) => void;
  /** Ids due for a refresh, gathered until the batch runs. */
  readonly #due = new Set<string>();
  #refreshTimer: NodeJS.Timeout | undefined;
  /** No refresh before this (epoch ms): set after one failed. */
  #retryAt = 0;
  #closed = false;
  #generation = 0;

  constructor(bus: ChangeBus, options: TenantCacheOptions = {}) {
    this.#bus = bus;
    const max = options.maxTenants ?? 20_000;
    const ttl = options.ttlMs ?? 60_000;
    this.#ttlMs = ttl;
    this.#refresh = options.refresh;
    this.#refreshBatchMs = options.refreshBatchMs ?? 250;
    this.#onRefreshError = options.onRefreshError ?? (() => undefined);
    const kept = this.#refresh ? ttl * 10 : ttl;
    this.#keptMs = kept;
    this.#byId = new LRUCache({ max, ttl: kept });
    this.#hosts = new LRUCache({ max: max * 2, ttl: kept });
    this.#slugs = new LRUCache({ max, ttl: kept });
    bus.subscribe((change) => {
      // Who may do what inside a tenant says nothing about which tenant a request names.
      // Nor does where a server is reached.
      if (
        change !== 'all' &&
        (change.kind === 'access' || change.kind === 'cache' || change.kind === 'server')
      )
        return;
      this.#generation += 1;
      this.#hosts.clear();
      this.#slugs.clear();
      // A migration of the row-level tables changes the schema version of every row tenant.
      if (change === 'all' || change.kind === 'entities') this.#byId.clear();
      else this.#byId.delete(change.tenantId);
    });
  }

  /**
   * Drops every cached tenant and lookup in this process: cached tenants carry their plan's
   * values, which a config reload may change (verified API keys stay: they name no plan).
   */
  clear(): void {
    this.#generation += 1;
    this.#byId.clear();
    this.#hosts.clear();
    this.#slugs.clear();
  }

  /** Stops the background refresh (the engine is closing). */
  close(): void {
    this.#closed = true;
    if (this.#refreshTimer) clearTimeout(this.#refreshTimer);
    this.#refreshTimer = undefined;
    this.#due.clear();
  }

  /** Tenants cached now. */
  get size(): number {
    return this.#byId.size;
  }

  /** A token to pass back to the setters: a fill that raced with an invalidation is dropped. */
  get generation(): number {
    return this.#generation;
  }

  tenant(id: string): Tenant | undefined {
    if (!this.#bus.reliable) return undefined;
    const entry = this.#byId.get(id);
    if (entry === undefined) return undefined;
    if (this.#refresh && Date.now() >= entry.refreshAt) this.#refreshSoon(id);
    return entry.tenant;
  }

  setTenant(tenant: Tenant, generation: number): void {
    if (generation === this.#generation && this.#bus.reliable) {
      const ttl = this.#spread(this.#ttlMs);
      const entry = { tenant, refreshAt: Date.now() + ttl };
      this.#byId.set(tenant.id, entry, { ttl: this.#refresh ? this.#spread(this.#keptMs) : ttl });
    }
  }

  #refreshSoon(id: string): void {
    if (this.#closed || this.#due.has(id)) return;
    this.#due.add(id);
    if (this.#refreshTimer) return;
    // After a failed refresh (the database down), the next waits: one error every few seconds,
    // and meanwhile the tenants keep being served until their entries are ten times too old.
    const delay = Math.max(this.#refreshBatchMs, this.#retryAt - Date.now());
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = undefined;
      this.#refreshDue().catch((error: unknown) => {
        // A refresh cut short by closing is no error: its entries simply age out.
        if (this.#closed) return;
        this.#retryAt = Date.now() + REFRESH_RETRY_MS;
        this.#onRefreshError(error);
      });
    }, delay);
    this.#refreshTimer.unref();
  }

  async #refreshDue(): Promise<void> {
    const ids = [...this.#due];
    this.#due.clear();
    for (let start = 0; start < ids.length && !this.#closed; start += REFRESH_CHUNK) {
      const chunk = ids.slice(start, start + REFRESH_CHUNK);
      const generation = this.#generation;
      const tenants = await this.#refresh!(chunk);
      const found = new Set<string>();
      for (const tenant of tenants) {
        found.add(tenant.id);
        // Only an entry still cached is renewed: one dropped meanwhile (a change) is read afresh.
        if (this.#byId.has(tenant.id)) this.setTenant(tenant, generation);
      }
      // A row gone from under the cache (removed around Tenantry) stops being served.
      if (generation === this.#generation) {
        for (const id of chunk) if (!found.has(id)) this.#byId.delete(id);
      }
    }
  }

  /** undefined: not cached; null: known to name no tenant; else the tenant id. */
  host(host: string): string | null | undefined {
    return this.#read(this.#hosts, host);
  }

  setHost(host: string, tenantId: string | undefined, generation: number): void {
    this.#write(this.#hosts, host, tenantId, generation);
  }

  slug(slug: string): string | null | undefined {
    return this.#read(this.#slugs, slug);
  }

  setSlug(slug: string, tenantId: string | undefined, generation: number): void {
    this.#write(this.#slugs, slug, tenantId, generation);
  }

  #read(map: LRUCache<string, Lookup>, key: string): string | null | undefined {
    if (!this.#bus.reliable) return undefined;
    const value = map.get(key);
    return value === MISSING ? null : value;
  }

  #write(map: LRUCache<string, Lookup>, key: string, tenantId: string | undefined, generation: number): void {
    if (generation === this.#generation && this.#bus.reliable)
      map.set(key, tenantId ?? MISSING, { ttl: this.#spread(this.#keptMs) });
  }

  /**
   * The time to live of one entry: 80 to 100 % of the configured one, at random. Entries filled
   * together (every busy tenant in the first seconds after a start) would otherwise expire
   * together, and their re-reads reach the database as one wave every period.
   */
  #spread(ms: number): number {
    return Math.round(ms * (0.8 + 0.2 * Math.random()));
  }
}
