import { type ApiKeyInfo, listTenantKeys } from './auth/api-key-store.js';
import { ApiKeyVerifier } from './auth/api-key-verifier.js';
import type { TenantryConfig } from './config/config-schema.js';
import { LockKey, withAdvisoryLock } from './db/advisory-locks.js';
import type { Database, Session } from './db/database.js';
import { type MigrationReport, migrateControlPlane } from './db/migrator.js';
import { openDatabase } from './db/open-database.js';
import { ensureRuntimeRole, grantControlPlaneAccess } from './db/roles.js';
import { ensureEntitySchemas, SchemaDriftError } from './entities/entity-schema.js';
import { TenantryError } from './errors.js';
import { TenantDatabases } from './isolation/tenant-databases.js';
import { TenantDataAccess, type TenantDb } from './isolation/tenant-db.js';
import { ROW_SCHEMA, tenantSchemaName } from './isolation/tenant-placement.js';
import { TenantProvisioner } from './isolation/tenant-provisioner.js';
import { TenantCache } from './resolve/tenant-cache.js';
import { TenantResolver } from './resolve/tenant-resolver.js';
import type { ActionContext } from './runtime/actor.js';
import { type AuditFilter, type AuditPage, listAudit, recordAudit } from './runtime/audit-log.js';
import { ChangeBus } from './runtime/change-bus.js';
import { BUILT_IN_RESERVED_SLUGS } from './tenants/slug.js';
import { TenantRegistry } from './tenants/tenant-registry.js';

export interface OpenTenantryOptions {
  readonly config: TenantryConfig;
  /** An already open database; otherwise one is opened from the config and closed with the engine. */
  readonly database?: Database;
  /** Apply control-plane migrations and create missing base tables first (default true). */
  readonly migrate?: boolean;
  /**
   * Refuse to open when the declared entities do not match the tables (SchemaDriftError).
   * `serve` sets it: it must never serve a mismatched schema. Operator commands do not.
   */
  readonly verifyEntities?: boolean;
  readonly onBackgroundError?: (error: unknown) => void;
}

/**
 * The engine: one per process. Everything the server, the CLI and library users do to tenants
 * goes through it, so all of them get the same validation, audit and cache invalidation.
 *
 * @example
 * const tenantry = await openTenantry({ config: loadConfig() });
 * const { tenant, apiKey } = await tenantry.tenants.create({ name: 'Acme', slug: 'acme' }, context);
 */
export class Tenantry {
  readonly config: TenantryConfig;
  readonly db: Database;
  readonly bus: ChangeBus;
  readonly tenants: TenantRegistry;
  readonly apiKeys: ApiKeyVerifier;
  readonly resolver: TenantResolver;
  readonly migration: MigrationReport | undefined;
  readonly provisioner: TenantProvisioner;
  readonly data: TenantDataAccess;
  readonly #databases: TenantDatabases | undefined;
  readonly #ownsDatabase: boolean;

  private constructor(options: {
    config: TenantryConfig;
    db: Database;
    ownsDatabase: boolean;
    bus: ChangeBus;
    migration: MigrationReport | undefined;
    onBackgroundError: (error: unknown) => void;
  }) {
    this.config = options.config;
    this.db = options.db;
    this.bus = options.bus;
    this.migration = options.migration;
    this.#ownsDatabase = options.ownsDatabase;
    const { url, adminUrl } = this.config.database;
    this.#databases =
      this.db.driver === 'postgres' && url
        ? new TenantDatabases({
            runtimeUrl: url,
            adminUrl: adminUrl ?? url,
            maxConnections: this.config.database.maxTenantConnections,
          })
        : undefined;
    this.provisioner = new TenantProvisioner(this.db, this.config, this.#databases);
    this.data = new TenantDataAccess(this.db, this.config, this.#databases);
    this.tenants = new TenantRegistry(this.db, this.bus, this.config, this.provisioner);
    this.apiKeys = new ApiKeyVerifier({
      db: this.db.runtime,
      bus: this.bus,
      iterations: this.config.apiKeys.iterations,
      cacheSize: this.config.apiKeys.cacheSize,
      cacheTtlSeconds: this.config.apiKeys.cacheTtlSeconds,
      onBackgroundError: options.onBackgroundError,
    });
    const reserved = new Set([...BUILT_IN_RESERVED_SLUGS, ...this.config.tenancy.reservedSlugs]);
    this.resolver = new TenantResolver(this.tenants, this.apiKeys, new TenantCache(this.bus), {
      baseDomain: this.config.server.baseDomain,
      isReservedSlug: (label) => reserved.has(label),
      onCrossTenant: async ({ host, key }, context) => {
        await recordAudit(this.db.owner, context, {
          action: 'resolve.cross_tenant',
          outcome: 'denied',
          tenantId: host.id,
          target: key.id,
          details: { hostTenant: host.id, keyTenant: key.id },
        }).catch(options.onBackgroundError);
      },
    });
  }

  static async open(options: OpenTenantryOptions): Promise<Tenantry> {
    const db = options.database ?? (await openDatabase(options.config));
    const onBackgroundError = options.onBackgroundError ?? (() => undefined);
    try {
      const migration = options.migrate === false ? undefined : await migrateControlPlane(db.owner);
      if (options.migrate !== false) {
        // All on the locked connection: a pool of one connection must not wait for itself.
        await withAdvisoryLock(db.owner, LockKey.ENTITY_STORAGE, (session) =>
          prepareEntityStorage(session, options.config, options.verifyEntities ?? false),
        );
      }
      const bus = new ChangeBus();
      await bus.start(db);
      const tenantry = new Tenantry({
        config: options.config,
        db,
        ownsDatabase: options.database === undefined,
        bus,
        migration,
        onBackgroundError,
      });
      if (options.verifyEntities) {
        try {
          await tenantry.#verifyDatabaseTenants();
        } catch (error) {
          await tenantry.close().catch(() => undefined);
          throw error;
        }
      }
      return tenantry;
    } catch (error) {
      if (options.database === undefined) await db.close().catch(() => undefined);
      throw error;
    }
  }

  /** Database tenants' tables against the declared entities, a few databases at a time. */
  async #verifyDatabaseTenants(): Promise<void> {
    const { rows } = await this.db.owner.query<{ id: string }>(
      "SELECT id FROM tenantry.tenants WHERE isolation = 'database' AND status IN ('active', 'inactive') ORDER BY id",
    );
    const differences: string[] = [];
    const queue = rows.map((row) => row.id);
    const worker = async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        differences.push(...(await this.provisioner.checkDatabaseTenant(id)));
      }
    };
    await Promise.all(Array.from({ length: Math.min(4, queue.length) }, worker));
    if (differences.length > 0) throw new SchemaDriftError(differences.sort());
  }

  async listKeys(idOrSlug: string, options: { includeRevoked?: boolean } = {}): Promise<ApiKeyInfo[]> {
    const tenant = await this.tenants.get(idOrSlug);
    return listTenantKeys(this.db.runtime, tenant.id, options.includeRevoked ?? false);
  }

  async audit(filter: AuditFilter & { tenant?: string } = {}): Promise<AuditPage> {
    const { tenant, ...rest } = filter;
    const tenantId =
      tenant === undefined ? rest.tenantId : (await this.tenants.get(tenant, { includeDeleted: true })).id;
    return listAudit(this.db.runtime, { ...rest, tenantId });
  }

  async recordAudit(context: ActionContext, entry: Parameters<typeof recordAudit>[2]): Promise<void> {
    await recordAudit(this.db.owner, context, entry);
  }

  /**
   * Runs `fn` with a database handle bound to the tenant, for jobs and scripts outside HTTP.
   * The tenant must exist and be active.
   *
   * @example
   * await tenantry.withTenant(tenantId, (db) => db.query('UPDATE tasks SET done = true WHERE due < now()'));
   */
  async withTenant<T>(tenantId: string, fn: (db: TenantDb) => Promise<T>): Promise<T> {
    const tenant = await this.resolver.tenantById(tenantId);
    if (!tenant || tenant.status === 'deleted' || tenant.status === 'provisioning') {
      throw new TenantryError('tenant_not_found', 'no such tenant');
    }
    if (tenant.status !== 'active') throw new TenantryError('tenant_inactive', 'this tenant is inactive');
    return fn(this.data.forTenant(tenant));
  }

  async close(): Promise<void> {
    await this.#databases?.close();
    await this.bus.close();
    if (this.#ownsDatabase) await this.db.close();
  }
}

async function prepareEntityStorage(db: Session, config: TenantryConfig, verify: boolean): Promise<void> {
  const role = config.database.runtimeRole;
  await ensureRuntimeRole(db, role);
  await grantControlPlaneAccess(db, role);
  const { rows } = await db.query<{ id: string }>(
    "SELECT id FROM tenantry.tenants WHERE isolation = 'schema' AND status IN ('active', 'inactive')",
  );
  try {
    await ensureEntitySchemas(db, {
      entities: config.entities,
      runtimeRole: role,
      rowSchema: ROW_SCHEMA,
      tenantSchemas: verify ? rows.map((row) => tenantSchemaName(row.id)) : [],
    });
  } catch (error) {
    if (verify || !(error instanceof SchemaDriftError)) throw error;
  }
}

export const openTenantry = (options: OpenTenantryOptions): Promise<Tenantry> => Tenantry.open(options);
