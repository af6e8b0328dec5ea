import { LRUCache } from 'lru-cache';
import { QuotaExceededError } from './quota.js';

/** What a tenant's data takes on disk: tables with their indexes and TOAST. */
export interface StorageSize {
  readonly bytes: number;
  /** True for row tenants: their share of tables they share with other tenants is estimated. */
  readonly estimated: boolean;
}

/** What the meter reads of a tenant. */
export interface MeteredTenant {
  readonly id: string;
  readonly slug: string;
  readonly effective: { readonly limits: { readonly maxStorageMb?: number | undefined } };
}

/** How long a storage measurement is trusted before the next write measures again. */
export const STORAGE_MEASURE_INTERVAL_MS = 30_000;

const BYTES_PER_MB = 1024 * 1024;

export interface StorageMeasurement extends StorageSize {
  readonly measuredAt: Date;
}

export interface StorageMeterOptions<T extends MeteredTenant> {
  readonly measure: (tenant: T) => Promise<StorageSize>;
  /** Default `STORAGE_MEASURE_INTERVAL_MS`; 0 measures before every checked write. */
  readonly intervalMs?: number;
  /** Tenants whose last measurement is kept (least recently used go first). */
  readonly maxTenants?: number;
}

/**
 * Each tenant's storage as last measured in this process. Measuring on every write would cost
 * more than the write, so a measurement is trusted for a short interval; the write that finds it
 * older measures again (concurrent writers of the tenant share that one measurement). The quota
 * is therefore soft by what a tenant writes within one interval. Tenants without
 * `limits.maxStorageMb` are never measured on the write path.
 */
export class StorageMeter<T extends MeteredTenant = MeteredTenant> {
  readonly intervalMs: number;
  readonly #measure: (tenant: T) => Promise<StorageSize>;
  readonly #latest: LRUCache<string, StorageMeasurement>;
  readonly #running = new Map<string, Promise<StorageMeasurement>>();

  constructor(options: StorageMeterOptions<T>) {
    this.#measure = options.measure;
    this.intervalMs = options.intervalMs ?? STORAGE_MEASURE_INTERVAL_MS;
    this.#latest = new LRUCache({ max: options.maxTenants ?? 100_000 });
  }

  /** A measurement taken now (and kept as the tenant's latest). */
  measure(tenant: T): Promise<StorageMeasurement> {
    const running = this.#running.get(tenant.id);
    if (running) return running;
    const measuring = this.#measure(tenant)
      .then((size) => {
        const measurement = Object.freeze({ ...size, measuredAt: new Date() });
        this.#latest.set(tenant.id, measurement);
        return measurement;
      })
      .finally(() => this.#running.delete(tenant.id));
    this.#running.set(tenant.id, measuring);
    return measuring;
  }

  /** The tenant's latest measurement while it is younger than the interval, else a new one. */
  current(tenant: T): Promise<StorageMeasurement> {
    const fresh = this.#fresh(tenant.id);
    return fresh ? Promise.resolve(fresh) : this.measure(tenant);
  }

  /**
   * Refuses a write that adds data (a create, a batch, an update that sets a value) when the
   * tenant's latest measurement is at or over its `limits.maxStorageMb` (403 `quota_exceeded`).
   * Undefined (no promise, no lookup) for a tenant without the limit, and synchronous while the
   * measurement is fresh.
   */
  admitWrite(tenant: T): Promise<void> | undefined {
    const maxMb = tenant.effective.limits.maxStorageMb;
    if (maxMb === undefined) return undefined;
    const fresh = this.#fresh(tenant.id);
    if (fresh) {
      refuseOver(tenant, maxMb, fresh);
      return undefined;
    }
    return this.measure(tenant).then((measurement) => refuseOver(tenant, maxMb, measurement));
  }

  /** The tenant's latest measurement however old, without measuring. */
  latest(tenantId: string): StorageMeasurement | undefined {
    return this.#latest.get(tenantId);
  }

  #fresh(tenantId: string): StorageMeasurement | undefined {
    const latest = this.#latest.get(tenantId);
    return latest && Date.now() - latest.measuredAt.getTime() < this.intervalMs ? latest : undefined;
  }
}

function refuseOver(tenant: MeteredTenant, maxMb: number, measurement: StorageMeasurement): void {
  if (measurement.bytes < maxMb * BYTES_PER_MB) return;
  const used = (measurement.bytes / BYTES_PER_MB).toFixed(2);
  throw new QuotaExceededError(
    tenant.slug,
    'maxStorageMb',
    `this tenant may store ${maxMb} MB and uses ${used} MB${measurement.estimated ? ' (estimated)' : ''}; delete data or ask for a larger quota`,
  );
}
