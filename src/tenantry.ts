import { type ApiKeyInfo, listTenantKeys } from './auth/api-key-store.js';
import { ApiKeyVerifier } from './auth/api-key-verifier.js';
import type { TenantryConfig } from './config/config-schema.js';
import type { Database } from './db/database.js';
import { type MigrationReport, migrateControlPlane } from './db/migrator.js';
import { openDatabase } from './db/open-database.js';
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
  /** Apply control-plane migrations first (default true). */
  readonly migrate?: boolean;
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
    this.tenants = new TenantRegistry(this.db, this.bus, this.config);
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
      const bus = new ChangeBus();
      await bus.start(db);
      return new Tenantry({
        config: options.config,
        db,
        ownsDatabase: options.database === undefined,
        bus,
        migration,
        onBackgroundError,
      });
    } catch (error) {
      if (options.database === undefined) await db.close().catch(() => undefined);
      throw error;
    }
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

  async close(): Promise<void> {
    await this.bus.close();
    if (this.#ownsDatabase) await this.db.close();
  }
}

export const openTenantry = (options: OpenTenantryOptions): Promise<Tenantry> => Tenantry.open(options);
