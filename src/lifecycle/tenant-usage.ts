import { countLiveKeys } from '../auth/api-key-store.js';
import { countTenantUsers } from '../auth/user-rows.js';
import type { LiveConfig } from '../config/live-config.js';
import type { Database } from '../db/database.js';
import { countTenantRows } from '../entities/row-quota.js';
import { TenantryError } from '../errors.js';
import type { EntitySchemas } from '../isolation/entity-schemas.js';
import {
  bypassesRowSecurity,
  countAllRows,
  measureStorageSize,
  type StorageSize,
} from '../isolation/storage-size.js';
import type { TenantDataAccess } from '../isolation/tenant-db.js';
import { type StorageMeasurement, StorageMeter } from '../runtime/storage-meter.js';
import type { Tenant } from '../tenants/tenant.js';
import { isBeingBuilt } from '../tenants/tenant.js';

/** What a tenant uses, one member per kind of quota. */
export interface TenantUsage {
  readonly rows: { readonly byEntity: Readonly<Record<string, number>>; readonly total: number };
  /** Bytes on disk; `estimated` for row tenants (their share of shared tables). */
  readonly storage: StorageMeasurement;
  /** Keys that authenticate now: not revoked, not expired. */
  readonly apiKeys: { readonly live: number };
  /** Its users, active or not (`limits.maxUsers` counts them all). */
  readonly users: { readonly total: number };
  /** The quotas in force (plan defaults under tenant overrides); absent ones are unlimited. */
  readonly limits: {
    readonly maxRows?: number;
    readonly maxRowsPerEntity?: number;
    readonly maxStorageMb?: number;
    readonly maxApiKeys?: number;
    readonly maxUsers?: number;
  };
}

export interface TenantUsageDeps {
  readonly db: Database;
  readonly config: LiveConfig;
  readonly data: TenantDataAccess;
  readonly schemas: EntitySchemas;
  /** How long a storage measurement is trusted by the `maxStorageMb` check. */
  readonly storageMeasureIntervalMs?: number | undefined;
}

/** Measures what tenants use against their quotas: rows, storage, live keys and users. */
export class TenantUsageMeter {
  /** Each tenant's storage as last measured, and the `maxStorageMb` check on writes. */
  readonly storage: StorageMeter<Tenant>;
  readonly #deps: TenantUsageDeps;
  /** Whether the owner role reads past row policies (checked once), to count all rows of a table. */
  #ownerReadsAllRows: Promise<boolean> | undefined;

  constructor(deps: TenantUsageDeps) {
    this.#deps = deps;
    this.storage = new StorageMeter<Tenant>({
      measure: (tenant) => this.#measureStorage(tenant),
      ...(deps.storageMeasureIntervalMs === undefined ? {} : { intervalMs: deps.storageMeasureIntervalMs }),
    });
  }

  /**
   * A tenant's usage. Rows and keys are counted now; storage is the tenant's latest measurement
   * while it is younger than the measurement interval (`fresh` measures again).
   */
  async of(tenant: Tenant, options: { fresh?: boolean } = {}): Promise<TenantUsage> {
    if (isBeingBuilt(tenant.status))
      throw new TenantryError('conflict', `the tenant is still being built (${tenant.status})`);
    const db = this.#deps.data.forTenant(tenant);
    const [counts, storage, liveKeys, users] = await Promise.all([
      this.#tenantTables(tenant).then((names) => countTenantRows(db, db, names)),
      options.fresh ? this.storage.measure(tenant) : this.storage.current(tenant),
      countLiveKeys(this.#deps.db.owner, tenant.id),
      countTenantUsers(this.#deps.db.owner, tenant.id),
    ]);
    const { maxRows, maxRowsPerEntity, maxStorageMb, maxApiKeys, maxUsers } = tenant.effective.limits;
    return {
      rows: { byEntity: counts, total: Object.values(counts).reduce((sum, count) => sum + count, 0) },
      storage,
      apiKeys: { live: liveKeys },
      users: { total: users },
      limits: {
        ...(maxRows === undefined ? {} : { maxRows }),
        ...(maxRowsPerEntity === undefined ? {} : { maxRowsPerEntity }),
        ...(maxStorageMb === undefined ? {} : { maxStorageMb }),
        ...(maxApiKeys === undefined ? {} : { maxApiKeys }),
        ...(maxUsers === undefined ? {} : { maxUsers }),
      },
    };
  }

  /** The tenant entities whose tables the tenant has (at its entity version). */
  async #tenantTables(tenant: Tenant): Promise<string[]> {
    const view = await this.#deps.schemas.loadView(tenant);
    return this.#deps.config.current.entities
      .filter((entity) => entity.scope === 'tenant' && view.repository(entity.name))
      .map((entity) => entity.name);
  }

  async #measureStorage(tenant: Tenant): Promise<StorageSize> {
    const db = this.#deps.data.forTenant(tenant);
    if (tenant.isolation !== 'row')
      return measureStorageSize({ isolation: tenant.isolation, db, tables: [] });
    const owner = this.#deps.db.owner;
    this.#ownerReadsAllRows ??= bypassesRowSecurity(owner).catch(() => false);
    return measureStorageSize({
      isolation: 'row',
      db,
      tables: await this.#tenantTables(tenant),
      ...((await this.#ownerReadsAllRows)
        ? { countAllRows: (table: string) => countAllRows(owner, db.placement.schema, table) }
        : {}),
    });
  }
}
