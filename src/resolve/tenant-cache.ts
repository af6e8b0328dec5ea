import { LRUCache } from 'lru-cache';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { Tenant } from '../tenants/tenant.js';

const MISSING = Symbol('missing');
type Lookup = string | typeof MISSING;

export interface TenantCacheOptions {
  readonly maxTenants?: number;
  readonly ttlMs?: number;
}

/**
 * Tenants, and the host and slug lookups that lead to them, kept in memory for the resolution
 * hot path. Any tenant change empties the host and slug maps (changes are rare, lookups are not),
 * and nothing is served from here while the change bus may have missed a notification.
 */
export class TenantCache {
  readonly #bus: ChangeBus;
  readonly #byId: LRUCache<string, Tenant>;
  readonly #hosts: LRUCache<string, Lookup>;
  readonly #slugs: LRUCache<string, Lookup>;
  readonly #ttlMs: number;
  #generation = 0;

  constructor(bus: ChangeBus, options: TenantCacheOptions = {}) {
    this.#bus = bus;
    const max = options.maxTenants ?? 10_000;
    const ttl = options.ttlMs ?? 60_000;
    this.#ttlMs = ttl;
    this.#byId = new LRUCache({ max, ttl });
    this.#hosts = new LRUCache({ max: max * 2, ttl });
    this.#slugs = new LRUCache({ max, ttl });
    bus.subscribe((change) => {
      // Who may do what inside a tenant says nothing about which tenant a request names.
      if (change !== 'all' && (change.kind === 'access' || change.kind === 'cache')) return;
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

  /** A token to pass back to the setters: a fill that raced with an invalidation is dropped. */
  get generation(): number {
    return this.#generation;
  }

  tenant(id: string): Tenant | undefined {
    return this.#bus.reliable ? this.#byId.get(id) : undefined;
  }

  setTenant(tenant: Tenant, generation: number): void {
    if (generation === this.#generation && this.#bus.reliable)
      this.#byId.set(tenant.id, tenant, { ttl: this.#spreadTtl() });
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
      map.set(key, tenantId ?? MISSING, { ttl: this.#spreadTtl() });
  }

  /**
   * The time to live of one entry: 80 to 100 % of the configured one, at random. Entries filled
   * together (every busy tenant in the first seconds after a start) would otherwise expire
   * together, and their re-reads reach the database as one wave every period.
   */
  #spreadTtl(): number {
    return Math.round(this.#ttlMs * (0.8 + 0.2 * Math.random()));
  }
}
