import type { LiveConfig } from '../config/live-config.js';
import type { Database } from '../db/database.js';
import type { Entity } from '../entities/entity.js';
import { storageVersion, versionFor } from '../entities/entity-ledger.js';
import { planEntityChange } from '../entities/entity-migration.js';
import { diffTables, readTables } from '../entities/entity-schema.js';
import {
  type EntityVersion,
  EntityVersions,
  type EntityView,
  loadVersions,
} from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { Tenant } from '../tenants/tenant.js';
import type { TenantDatabases } from './tenant-databases.js';
import { databaseLocation, placementOf } from './tenant-placement.js';
import { readDatabaseLedger } from './tenant-provisioner.js';

/**
 * The entity declarations the tables are at: the versions registered in the ledger, the code's
 * own, the row-level and shared tables' current ones, and the view of the entities each tenant's
 * tables can serve.
 */
export class EntitySchemas {
  readonly versions: EntityVersions;
  readonly #db: Database;
  readonly #config: LiveConfig;
  readonly #databases: TenantDatabases | undefined;
  #sharedVersion: number | undefined;

  constructor(db: Database, config: LiveConfig, databases: TenantDatabases | undefined) {
    this.#db = db;
    this.#config = config;
    this.#databases = databases;
    this.versions = new EntityVersions(config.current.entities);
  }

  /** Reads versions registered since the last load (all of them at first). */
  async load(initial: boolean): Promise<void> {
    const known = this.versions.latest;
    const { rows } = await this.#db.owner.query<{ version: number }>(
      'SELECT version FROM tenantry.entity_versions WHERE version > $1',
      [initial ? 0 : known],
    );
    if (rows.length > 0 || initial) this.versions.add(await loadVersions(this.#db.owner), { initial });
    this.#sharedVersion = await storageVersion(this.#db.owner, 'shared');
  }

  /** The code's registered entity version: registered when first needed (a new tenant, a migration). */
  async codeVersion(): Promise<EntityVersion> {
    const known = this.versions.codeVersion;
    if (known !== undefined) return this.versions.known(known)!;
    const entities = this.#config.current.entities;
    // A declaration nobody registered yet: refuse to build tenants at one that `migrate` would
    // refuse, so the ledger never holds a version the fleet cannot reach.
    const latest = this.versions.known(this.versions.latest);
    if (latest && latest.digest !== this.versions.digest) {
      const change = planEntityChange(latest.entities, entities);
      const problems = [...change.tenant.problems, ...change.shared.problems];
      if (problems.length > 0) {
        throw new TenantryError(
          'conflict',
          `the declared entities cannot be migrated from version ${latest.version}: ${problems.map((p) => p.message).join('; ')}`,
        );
      }
    }
    const version = await this.#db.owner.withSession((session) => versionFor(session, entities));
    this.versions.add([version]);
    return version;
  }

  /** The entities the row-level tables are at (what a row tenant's purge deletes from). */
  async rowEntities(): Promise<readonly Entity[]> {
    const version = await storageVersion(this.#db.owner, 'row');
    await this.#ensureLoaded(version);
    return version === undefined
      ? this.#config.current.entities
      : (this.versions.known(version)?.entities ?? []);
  }

  /** Differences between a tenant's tables and the entity version it records. */
  async check(tenant: Tenant): Promise<string[]> {
    await this.#ensureLoaded(tenant.schemaVersion);
    const version = tenant.schemaVersion === null ? undefined : this.versions.known(tenant.schemaVersion);
    if (!version) return [`tenant ${tenant.slug} records no entity version`];
    const entities = version.entities.filter((entity) => entity.scope === 'tenant');
    const placement = placementOf(tenant);
    const where = placement.database ? `database ${placement.database}` : `schema ${placement.schema}`;
    const read = async (db: Parameters<typeof readTables>[0]) => {
      const tables = (await readTables(db, [placement.schema])).get(placement.schema)!;
      const differences = diffTables(entities, tables, where);
      if (placement.database) {
        const ledger = await readDatabaseLedger(db);
        if (ledger?.version !== version.version)
          differences.push(
            `${where}: records version ${ledger?.version ?? 'none'}, the control plane ${version.version}`,
          );
      }
      return differences;
    };
    if (!placement.database) return read(this.#db.owner);
    if (!this.#databases) return [`${where}: database tenants need PostgreSQL`];
    return this.#databases.use(databaseLocation(placement), 'owner', read);
  }

  /**
   * The declared entities as a tenant's tables can serve them, synchronously when its version is
   * loaded (undefined: call `loadView`). Refuses a tenant whose tables are newer than this code:
   * only a newer deployment may serve it.
   */
  view(tenant: Tenant): EntityView | undefined {
    const version = tenant.schemaVersion ?? this.versions.codeVersion ?? this.versions.latest;
    const newer = this.versions.isNewer(version);
    if (newer === undefined) return undefined;
    if (newer) {
      throw new TenantryError(
        'unavailable',
        `tenant ${tenant.slug} was migrated by a newer deployment than this server; it is served by the newer one`,
      );
    }
    return this.versions.view(version);
  }

  async loadView(tenant: Tenant): Promise<EntityView> {
    const cached = this.view(tenant);
    if (cached) return cached;
    await this.#ensureLoaded(tenant.schemaVersion);
    const view = this.view(tenant);
    if (!view) throw new TenantryError('unavailable', 'the tenant records an unknown entity version');
    return view;
  }

  /** The shared entities as the shared tables can serve them. */
  sharedView(): EntityView {
    const version = this.#sharedVersion ?? this.versions.codeVersion ?? this.versions.latest;
    if (this.versions.isNewer(version) !== false && this.versions.known(version)) {
      throw new TenantryError('unavailable', 'the shared tables were migrated by a newer deployment');
    }
    const view = this.versions.view(version);
    if (!view) throw new TenantryError('unavailable', 'the shared tables record an unknown entity version');
    return view;
  }

  async #ensureLoaded(version: number | undefined | null): Promise<void> {
    if (version === undefined || version === null || this.versions.known(version)) return;
    this.versions.add(await loadVersions(this.#db.owner));
  }
}
