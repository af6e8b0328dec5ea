import { checkKeyId, parseApiKeyRequest } from './auth/api-key-input.js';
import { type ApiKeyInfo, countLiveKeys, listTenantKeys } from './auth/api-key-store.js';
import type { KeyScope } from './auth/api-key-verifier.js';
import { ApiKeyVerifier } from './auth/api-key-verifier.js';
import { assertCanGrant, type Principal, requirePermission } from './auth/delegation.js';
import { Identity } from './auth/identity.js';
import { freezeSet, intersection, type PermissionSet } from './auth/permissions.js';
import { countTenantUsers, normaliseEmail } from './auth/user-directory.js';
import { planConfigReload } from './config/config-reload.js';
import type { TenantryConfig } from './config/config-schema.js';
import { LockKey, withAdvisoryLock } from './db/advisory-locks.js';
import type { Database } from './db/database.js';
import type { MigrationReport } from './db/migrator.js';
import { openDatabase } from './db/open-database.js';
import type { Entity } from './entities/entity.js';
import { storageVersion, versionFor } from './entities/entity-ledger.js';
import { planEntityChange } from './entities/entity-migration.js';
import { countTenantRows } from './entities/entity-repository.js';
import { diffTables, readTables } from './entities/entity-schema.js';
import {
  type EntityVersion,
  EntityVersions,
  type EntityView,
  loadVersions,
} from './entities/entity-versions.js';
import { TenantryError } from './errors.js';
import { DatabaseServers } from './isolation/database-servers.js';
import { prepareDatabase } from './isolation/entity-storage.js';
import { FleetMigration, type MigrateOptions, type MigrateReport } from './isolation/fleet-migration.js';
import {
  bypassesRowSecurity,
  countAllRows,
  measureStorageSize,
  type StorageSize,
} from './isolation/storage-size.js';
import { TenantDatabases } from './isolation/tenant-databases.js';
import { TenantDataAccess, type TenantDb } from './isolation/tenant-db.js';
import { TenantLocks } from './isolation/tenant-locks.js';
import { databaseLocation, placementOf } from './isolation/tenant-placement.js';
import { readDatabaseLedger, TenantProvisioner } from './isolation/tenant-provisioner.js';
import { TenantCache } from './resolve/tenant-cache.js';
import { type Resolution, TenantResolver } from './resolve/tenant-resolver.js';
import type { ActionContext } from './runtime/actor.js';
import { type AuditFilter, type AuditPage, listAudit, recordAudit } from './runtime/audit-log.js';
import { ChangeBus } from './runtime/change-bus.js';
import type { EngineLogger } from './runtime/engine-logger.js';
import { silentLogger } from './runtime/engine-logger.js';
import { FailureLimiter } from './runtime/failure-limiter.js';
import { Metrics } from './runtime/metrics.js';
import { RedisConnection } from './runtime/redis-connection.js';
import { ScopedCache, type TenantCache as TenantScopedCache } from './runtime/scoped-cache.js';
import { type StorageMeasurement, StorageMeter } from './runtime/storage-meter.js';
import { TenantLimiter } from './runtime/tenant-limiter.js';
import { BUILT_IN_RESERVED_SLUGS, isUuid } from './tenants/slug.js';
import {
  applyStaticSync,
  planStaticSync,
  type StaticSyncPlan,
  type StaticSyncReport,
} from './tenants/static-tenant-sync.js';
import type { Tenant } from './tenants/tenant.js';
import { TenantRegistry } from './tenants/tenant-registry.js';
import { assertTenantSettingsFit } from './tenants/tenant-settings.js';

export interface OpenTenantryOptions {
  readonly config: TenantryConfig;
  /** An already open database; otherwise one is opened from the config and closed with the engine. */
  readonly database?: Database;
  /** Apply control-plane migrations and create missing base tables first (default true). */
  readonly migrate?: boolean;
  /**
   * Refuse to open when the row-level or shared tables do not match the entity version they
   * record (SchemaDriftError). `serve` sets it. Tenants behind the declared entities are served
   * for the fields they have; tenants ahead of them are refused.
   */
  readonly verifyEntities?: boolean;
  readonly onBackgroundError?: (error: unknown) => void;
  /** Size of the owner pool when it has a URL of its own (the fleet migration needs one per worker). */
  readonly ownerConnections?: number;
  /** Where operational events go (Redis down and back, reloads); silent by default. */
  readonly logger?: EngineLogger;
  /** Connect to Redis when `redisUrl` is set (default true; the CLI's short commands do not need it). */
  readonly redis?: boolean;
  /**
   * How long a tenant's storage measurement is trusted by the `maxStorageMb` check before a write
   * measures again (default 30 000 ms, `STORAGE_MEASURE_INTERVAL_MS`).
   */
  readonly storageMeasureIntervalMs?: number;
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
  readonly db: Database;
  readonly bus: ChangeBus;
  readonly tenants: TenantRegistry;
  readonly apiKeys: ApiKeyVerifier;
  readonly resolver: TenantResolver;
  readonly migration: MigrationReport | undefined;
  readonly provisioner: TenantProvisioner;
  readonly data: TenantDataAccess;
  readonly servers: DatabaseServers;
  readonly locks: TenantLocks;
  readonly versions: EntityVersions;
  readonly fleet: FleetMigration;
  readonly metrics: Metrics;
  /** Shared state across server processes (limits, cache); undefined without REDIS_URL. */
  readonly redis: RedisConnection | undefined;
  readonly logger: EngineLogger;
  /** Per-tenant rate limits and concurrency caps. */
  readonly limiter: TenantLimiter;
  /** Failed credential checks per client address. */
  readonly keyFailures: FailureLimiter;
  /** Users, roles, groups, sessions and login inside tenants; global admins. */
  readonly identity: Identity;
  /** The tenant-scoped cache of application code (`request.cache`, `cache.forTenant`). */
  readonly cache: ScopedCache;
  /** Each tenant's storage as last measured, and the `maxStorageMb` check on writes. */
  readonly storageMeter: StorageMeter;
  readonly #databases: TenantDatabases | undefined;
  #sharedVersion: number | undefined;
  #onBackgroundError: (error: unknown) => void;
  readonly #ownsDatabase: boolean;
  /** Swapped whole by `reloadConfig`; components that follow a reload read it through `config`. */
  #config: TenantryConfig;
  #reservedSlugs: ReadonlySet<string>;
  readonly #tenantCache: TenantCache;
  #configChanges: Promise<unknown> = Promise.resolve();
  /** Whether the owner role reads past row policies (checked once), to count all rows of a table. */
  #ownerReadsAllRows: Promise<boolean> | undefined;

  private constructor(options: {
    config: TenantryConfig;
    db: Database;
    ownsDatabase: boolean;
    bus: ChangeBus;
    migration: MigrationReport | undefined;
    onBackgroundError: (error: unknown) => void;
    logger: EngineLogger;
    redis: boolean;
    storageMeasureIntervalMs: number | undefined;
  }) {
    this.logger = options.logger;
    this.#config = options.config;
    this.#reservedSlugs = reservedSlugs(options.config);
    this.db = options.db;
    this.bus = options.bus;
    this.migration = options.migration;
    this.#ownsDatabase = options.ownsDatabase;
    this.#onBackgroundError = options.onBackgroundError;
    this.servers = new DatabaseServers(this.db, this.config);
    this.locks = new TenantLocks(this.db);
    this.versions = new EntityVersions(this.config.entities);
    this.#databases =
      this.db.driver === 'postgres' && this.config.database.url
        ? new TenantDatabases({
            urls: (server) => this.servers.urls(server),
            maxConnections: this.config.database.maxTenantConnections,
            statementCacheSize: this.config.database.statementCacheSize,
          })
        : undefined;
    this.provisioner = new TenantProvisioner(this.config, this.#databases, this.servers);
    const databases = this.#databases;
    this.metrics = new Metrics({
      tenantLabels: this.config.metrics.tenantLabels,
      control: this.db.runtime,
      ...(databases
        ? {
            tenantPools: () => ({
              open: databases.openPools,
              leased: databases.leasedPools,
              max: databases.maxPools,
            }),
          }
        : {}),
    });
    this.redis =
      options.redis && this.config.redisUrl
        ? new RedisConnection(this.config.redisUrl, {
            onStateChange: (up, reason) => {
              this.metrics.redisUp(up);
              if (up)
                this.logger.info(
                  {},
                  'Redis is reachable: limits and the tenant cache are shared by every process again',
                );
              else
                this.logger.warn(
                  { reason },
                  'Redis is unreachable: each process limits on its own and the shared tenant cache misses until it is back',
                );
            },
          })
        : undefined;
    const { rateLimits } = this.config;
    this.limiter = new TenantLimiter({
      redis: this.redis,
      prefix: rateLimits.redisPrefix,
      leaseMs: rateLimits.concurrencyLeaseSeconds * 1000,
      onFallback: () => this.metrics.limiterFallback('tenant_limits'),
    });
    this.keyFailures = new FailureLimiter({
      redis: this.redis,
      prefix: rateLimits.redisPrefix,
      name: 'key-failures',
      failures: rateLimits.keyFailuresPerMinute,
      windowSeconds: 60,
      blockSeconds: rateLimits.keyFailureBlockSeconds,
      onFallback: () => this.metrics.limiterFallback('key_failures'),
    });
    this.cache = new ScopedCache({
      settings: { ...this.config.cache, prefix: rateLimits.redisPrefix },
      bus: this.bus,
      redis: this.redis,
      // Outside a transaction: the delete it announces is done already.
      broadcast: async (change) => {
        if (this.db.shared) await this.bus.announce(this.db.runtime, change);
      },
      onOutcome: (outcome) => this.metrics.cacheRead(outcome),
      onSkipped: (operation) => this.metrics.cacheSkipped(operation),
      logger: this.logger,
    });
    this.identity = new Identity({
      db: this.db,
      bus: this.bus,
      entities: this.config.entities,
      settings: { ...this.config.auth, secretIterations: this.config.apiKeys.iterations },
      redis: this.redis,
      redisPrefix: rateLimits.redisPrefix,
      onLimiterFallback: () => this.metrics.limiterFallback('login_failures'),
      onLoginLimited: () => this.metrics.rateLimited(undefined, 'login_failures'),
      onBackgroundError: options.onBackgroundError,
      userQuota: async (tenantId) => {
        const tenant = await this.resolver.tenantById(tenantId);
        const max = tenant?.effective.limits.maxUsers;
        return max === undefined || !tenant ? undefined : { max, slug: tenant.slug };
      },
    });
    this.data = new TenantDataAccess(this.db, this.config, this.#databases, (tenant, seconds) =>
      this.metrics.observeDatabase(tenant, seconds),
    );
    this.storageMeter = new StorageMeter({
      measure: (tenant) => this.#measureStorage(tenant),
      ...(options.storageMeasureIntervalMs === undefined
        ? {}
        : { intervalMs: options.storageMeasureIntervalMs }),
    });
    this.fleet = new FleetMigration({
      db: this.db,
      config: this.config,
      bus: this.bus,
      locks: this.locks,
      databases: this.#databases,
      servers: this.servers,
    });
    this.tenants = new TenantRegistry(this.db, this.bus, () => this.#config, {
      provisioner: this.provisioner,
      locks: this.locks,
      storage: {
        codeVersion: () => this.#codeVersion(),
        rowEntities: () => this.#rowEntities(),
        check: (tenant) => this.#checkTables(tenant),
        servers: this.servers,
      },
    });
    this.apiKeys = new ApiKeyVerifier({
      db: this.db.runtime,
      bus: this.bus,
      iterations: this.config.apiKeys.iterations,
      cacheSize: this.config.apiKeys.cacheSize,
      cacheTtlSeconds: this.config.apiKeys.cacheTtlSeconds,
      onBackgroundError: options.onBackgroundError,
    });
    const credentials = { keys: this.apiKeys, sessions: this.identity.sessions };
    this.#tenantCache = new TenantCache(this.bus);
    this.resolver = new TenantResolver(this.tenants, credentials, this.#tenantCache, {
      baseDomain: this.config.server.baseDomain,
      isReservedSlug: (label) => this.#reservedSlugs.has(label),
      onCrossTenant: async ({ claims }, context) => {
        const named = (source: string) => claims.find((claim) => claim.source === source)?.tenantId;
        const credential = named('apiKey') ?? named('session');
        await recordAudit(this.db.owner, context, {
          action: 'resolve.cross_tenant',
          outcome: 'denied',
          tenantId: named('host') ?? claims[0]?.tenantId,
          target: credential,
          details: Object.fromEntries(
            claims.map((claim) => [
              `${claim.source === 'apiKey' ? 'key' : claim.source}Tenant`,
              claim.tenantId,
            ]),
          ),
        }).catch(options.onBackgroundError);
      },
    });
  }

  static async open(options: OpenTenantryOptions): Promise<Tenantry> {
    const db =
      options.database ??
      (await openDatabase(
        options.config,
        options.ownerConnections === undefined ? {} : { ownerConnections: options.ownerConnections },
      ));
    const onBackgroundError = options.onBackgroundError ?? (() => undefined);
    try {
      const migration =
        options.migrate === false
          ? undefined
          : await prepareDatabase(db, options.config, options.verifyEntities ?? false);
      const bus = new ChangeBus();
      await bus.start(db);
      const tenantry = new Tenantry({
        config: options.config,
        db,
        ownsDatabase: options.database === undefined,
        bus,
        migration,
        onBackgroundError,
        logger: options.logger ?? silentLogger,
        redis: options.redis ?? true,
        storageMeasureIntervalMs: options.storageMeasureIntervalMs,
      });
      if (tenantry.redis && !(await tenantry.redis.ready(2_000))) {
        tenantry.logger.warn(
          { redis: maskRedisUrl(options.config.redisUrl ?? '') },
          'Redis is unreachable: each process limits on its own and the shared tenant cache misses until it is back',
        );
      }
      try {
        await tenantry.#loadVersions(true);
      } catch (error) {
        await tenantry.close().catch(() => undefined);
        throw error;
      }
      bus.subscribe((change) => {
        if (change === 'all' || change.kind === 'entities')
          tenantry.#loadVersions(false).catch(onBackgroundError);
      });
      return tenantry;
    } catch (error) {
      if (options.database === undefined) await db.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * The configuration in force: a frozen value, replaced whole by `reloadConfig`. Hold on to it
   * only for the length of one operation.
   */
  get config(): TenantryConfig {
    return this.#config;
  }

  /**
   * Makes the tenants the config file declares (`tenants:`) exist as declared: creates, updates
   * and deactivates through the registry, audited as `system:config`. Under an advisory lock, so
   * processes starting at once sync one after the other (the later ones find nothing to do).
   * `serve` runs it at start. Throws ConfigError naming the key when the database contradicts
   * the file; the keys of created tenants are in the report, shown once.
   *
   * @example
   * const report = await tenantry.syncStaticTenants();
   * for (const { slug, apiKey } of report.created) console.error(slug, apiKey.key);
   */
  syncStaticTenants(): Promise<StaticSyncReport> {
    return this.#changeConfig(() =>
      withAdvisoryLock(this.db.owner, LockKey.STATIC_TENANTS, async () => {
        const plan = await planStaticSync(this.db.owner, this.#config);
        return this.#applySync(plan, this.#config);
      }),
    );
  }

  /**
   * Applies a config file read again (SIGHUP) without a restart: plans, `settingsSchema`,
   * `tenancy.defaultPlan`, `defaultIsolation`, `reservedSlugs` and the static tenants. Other
   * changed keys are logged as taking effect at restart and keep their running values. A config
   * the database contradicts is refused with a ConfigError and nothing changes. Requests in
   * flight finish with the tenant values they started with; the next ones see the new plans.
   *
   * @example
   * process.on('SIGHUP', () => tenantry.reloadConfig(loadConfig()).catch((error) => log.error(error)));
   */
  reloadConfig(next: TenantryConfig): Promise<ConfigReloadReport> {
    return this.#changeConfig(async () => {
      const reload = planConfigReload(this.#config, next);
      if (reload.restartRequired.length > 0) {
        this.logger.warn(
          { keys: reload.restartRequired },
          `config reload: ${reload.restartRequired.join(', ')} changed; takes effect at restart (the running values stay)`,
        );
      }
      const sync = await withAdvisoryLock(this.db.owner, LockKey.STATIC_TENANTS, async () => {
        const plan = await planStaticSync(this.db.owner, reload.config);
        if (reload.changed.includes('settingsSchema') || reload.changed.includes('plans')) {
          await assertTenantSettingsFit(this.db.owner, reload.config.settingsSchema, reload.config.plans);
        }
        // Nothing was changed before this point: a refused config leaves everything as it was.
        this.#config = reload.config;
        this.#reservedSlugs = reservedSlugs(reload.config);
        // Cached tenants carry their plan's values: drop them in this process (each process
        // reloads on its own signal, so nothing is announced to the others).
        if (reload.changed.includes('plans')) this.#tenantCache.clear();
        return this.#applySync(plan, reload.config);
      });
      this.logger.info(
        { changed: reload.changed, restartRequired: reload.restartRequired },
        'config reloaded',
      );
      return { changed: reload.changed, restartRequired: reload.restartRequired, sync };
    });
  }

  async #applySync(plan: StaticSyncPlan, config: TenantryConfig): Promise<StaticSyncReport> {
    const report = await applyStaticSync(plan, {
      registry: this.tenants,
      owner: this.db.owner,
      config,
      logger: this.logger,
    });
    if (report.created.length + report.updated.length + report.activated.length + report.deactivated.length) {
      this.logger.info(
        {
          created: report.created.map((entry) => entry.slug),
          updated: report.updated.map((entry) => entry.slug),
          activated: report.activated,
          deactivated: report.deactivated,
        },
        'static tenants synced with the config file',
      );
    }
    return report;
  }

  /** Config changes run one at a time: two signals in a row apply in order. */
  #changeConfig<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#configChanges.then(fn, fn);
    this.#configChanges = run.catch(() => undefined);
    return run;
  }

  async #loadVersions(initial: boolean): Promise<void> {
    const known = this.versions.latest;
    const { rows } = await this.db.runtime.query<{ version: number }>(
      'SELECT version FROM tenantry.entity_versions WHERE version > $1',
      [initial ? 0 : known],
    );
    if (rows.length > 0 || initial) this.versions.add(await loadVersions(this.db.runtime), { initial });
    this.#sharedVersion = await storageVersion(this.db.runtime, 'shared');
  }

  /** The code's registered entity version: registered when first needed (a new tenant, a migration). */
  async #codeVersion(): Promise<EntityVersion> {
    const known = this.versions.codeVersion;
    if (known !== undefined) return this.versions.known(known)!;
    // A declaration nobody registered yet: refuse to build tenants at one that `migrate` would
    // refuse, so the ledger never holds a version the fleet cannot reach.
    const latest = this.versions.known(this.versions.latest);
    if (latest && latest.digest !== this.versions.digest) {
      const change = planEntityChange(latest.entities, this.config.entities);
      const problems = [...change.tenant.problems, ...change.shared.problems];
      if (problems.length > 0) {
        throw new TenantryError(
          'conflict',
          `the declared entities cannot be migrated from version ${latest.version}: ${problems.map((p) => p.message).join('; ')}`,
        );
      }
    }
    const version = await this.db.owner.withSession((session) => versionFor(session, this.config.entities));
    this.versions.add([version]);
    return version;
  }

  async #rowEntities(): Promise<readonly Entity[]> {
    const version = await storageVersion(this.db.owner, 'row');
    await this.#ensureVersionLoaded(version);
    return version === undefined ? this.config.entities : (this.versions.known(version)?.entities ?? []);
  }

  async #ensureVersionLoaded(version: number | undefined | null): Promise<void> {
    if (version === undefined || version === null || this.versions.known(version)) return;
    this.versions.add(await loadVersions(this.db.runtime));
  }

  /** Differences between a tenant's tables and the entity version it records. */
  async #checkTables(tenant: Tenant): Promise<string[]> {
    await this.#ensureVersionLoaded(tenant.schemaVersion);
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
    if (!placement.database) return read(this.db.owner);
    if (!this.#databases) return [`${where}: database tenants need PostgreSQL`];
    return this.#databases.use(databaseLocation(placement), 'owner', read);
  }

  /**
   * The declared entities as a tenant's tables can serve them, synchronously when its version is
   * loaded (undefined: call `loadEntityView`). Refuses a tenant whose tables are newer than this
   * code: only a newer deployment may serve it.
   */
  entityView(tenant: Tenant): EntityView | undefined {
    const version = tenant.schemaVersion ?? this.versions.codeVersion ?? this.versions.latest;
    const newer = this.versions.isNewer(version);
    if (newer === undefined) return undefined;
    if (newer) throw tooNew(tenant.slug);
    return this.versions.view(version);
  }

  async loadEntityView(tenant: Tenant): Promise<EntityView> {
    const cached = this.entityView(tenant);
    if (cached) return cached;
    await this.#ensureVersionLoaded(tenant.schemaVersion);
    const view = this.entityView(tenant);
    if (!view) throw new TenantryError('unavailable', 'the tenant records an unknown entity version');
    return view;
  }

  /**
   * Creates a tenant (see `tenants.create`) and, with `adminEmail`, its first administrator: a
   * user with the tenant-admin role and a one-time set-up token (shown once). The email is
   * checked first, so a taken one refuses the whole creation.
   *
   * @example
   * const { tenant, apiKey, admin } = await tenantry.createTenant({ name: 'Acme', slug: 'acme' }, context, { adminEmail: 'it@acme.test' });
   */
  async createTenant(input: unknown, context: ActionContext, options: { adminEmail?: string } = {}) {
    const email =
      options.adminEmail === undefined ? undefined : normaliseEmail(options.adminEmail, 'adminEmail');
    if (email !== undefined && (await this.identity.users.emailTaken(email))) {
      throw new TenantryError('conflict', 'an account with this email exists already', {
        field: 'adminEmail',
      });
    }
    const created = await this.tenants.create(input, context);
    if (email === undefined) return created;
    const admin = await this.identity.users.create(this.identity.operator(created.tenant.id, context), {
      email,
      roles: ['tenant-admin'],
    });
    return { ...created, admin };
  }

  /**
   * A further API key of a tenant, made by an operator: `permissions` (optional) must name tenant
   * permissions; without it the key holds every tenant permission. `maxApiKeys` applies.
   */
  async createApiKey(idOrSlug: string, input: unknown, context: ActionContext) {
    const request = parseApiKeyRequest(input);
    if (request.permissions) this.#checkKeyPermissions(request.permissions);
    return this.tenants.createApiKey(idOrSlug, input, context);
  }

  /**
   * A key made by a tenant actor (`keys:manage`): it holds at most what its maker holds, and a key
   * made by a user never more than that user holds later either. A key made by a key belongs to
   * the user who made that key: it does not outlive that user's permissions either. Without
   * `permissions` it gets the maker's permissions of today.
   */
  async createScopedKey(principal: Principal, input: unknown) {
    requirePermission(principal, 'keys:manage');
    const request = parseApiKeyRequest(input);
    const permissions = request.permissions ?? [...principal.permissions].sort();
    this.#checkKeyPermissions(permissions);
    assertCanGrant(principal, permissions, 'this key');
    return this.tenants.createApiKey(
      principal.tenantId,
      { ...(input as object), permissions },
      principal.context,
      { createdBy: principal.userId ?? principal.keyCreatedBy ?? null },
    );
  }

  /**
   * Revokes a key for a tenant actor (`keys:manage`): only a key that holds no more than the actor
   * does. A narrow key that may manage keys would otherwise cut off broader ones, the tenant's
   * operator keys included.
   */
  async revokeScopedKey(principal: Principal, keyId: string): Promise<ApiKeyInfo> {
    requirePermission(principal, 'keys:manage');
    const [key] = await listTenantKeys(this.db.owner, principal.tenantId, true, checkKeyId(keyId));
    if (key) assertCanGrant(principal, key.permissions ?? this.identity.catalogue.all, 'revoking this key');
    return this.tenants.revokeApiKey(principal.tenantId, keyId, principal.context);
  }

  #checkKeyPermissions(permissions: readonly string[]): void {
    const unknown = this.identity.catalogue.unknown(permissions);
    if (unknown.length > 0) {
      throw new TenantryError(
        'validation_failed',
        `not tenant permissions (a key cannot hold them): ${unknown.slice(0, 10).join(', ')}`,
        { field: 'permissions' },
      );
    }
  }

  /**
   * What a tenant uses against its limits, measured now: rows per entity and in all, storage and
   * live API keys, with the limits in force.
   */
  async usage(idOrSlug: string): Promise<TenantUsage> {
    return this.usageOf(await this.tenants.get(idOrSlug), { fresh: true });
  }

  /**
   * A tenant's usage. Rows and keys are counted now; storage is the tenant's latest measurement
   * while it is younger than the measurement interval (`fresh` measures again).
   */
  async usageOf(tenant: Tenant, options: { fresh?: boolean } = {}): Promise<TenantUsage> {
    if (tenant.status === 'provisioning')
      throw new TenantryError('conflict', 'the tenant is still being provisioned');
    const db = this.data.forTenant(tenant);
    const [counts, storage, liveKeys, users] = await Promise.all([
      this.#tenantTables(tenant).then((names) => countTenantRows(db, db, names)),
      options.fresh ? this.storageMeter.measure(tenant) : this.storageMeter.current(tenant),
      countLiveKeys(this.db.runtime, tenant.id),
      countTenantUsers(this.db.owner, tenant.id),
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
    const view = await this.loadEntityView(tenant);
    return this.config.entities
      .filter((entity) => entity.scope === 'tenant' && view.repository(entity.name))
      .map((entity) => entity.name);
  }

  async #measureStorage(tenant: Tenant): Promise<StorageSize> {
    const db = this.data.forTenant(tenant);
    if (tenant.isolation !== 'row')
      return measureStorageSize({ isolation: tenant.isolation, db, tables: [] });
    this.#ownerReadsAllRows ??= bypassesRowSecurity(this.db.owner).catch(() => false);
    const owner = this.db.owner;
    return measureStorageSize({
      isolation: 'row',
      db,
      tables: await this.#tenantTables(tenant),
      ...((await this.#ownerReadsAllRows)
        ? { countAllRows: (table: string) => countAllRows(owner, db.placement.schema, table) }
        : {}),
    });
  }

  /**
   * What the caller of a resolved request may do in its tenant, from memory; undefined means
   * "ask `permissionsOf`". A user's session holds its roles' permissions; an API key its scope
   * (every tenant permission when unscoped), never more than the user who made it holds now; a
   * request with both holds what both allow; a caller known only by its host, nothing.
   */
  permissionsCached(resolution: Resolution): PermissionSet | undefined {
    const tenantId = resolution.tenant.id;
    let held: PermissionSet | undefined;
    if (resolution.session) {
      held = this.identity.access.userPermissionsCached(tenantId, resolution.session.userId);
      if (!held) return undefined;
    }
    if (resolution.keyScope) {
      const scope = resolution.keyScope;
      const creator =
        scope.createdBy === null
          ? undefined
          : this.identity.access.userPermissionsCached(tenantId, scope.createdBy);
      if (scope.createdBy !== null && !creator) return undefined;
      const key = this.#keyPermissions(scope, creator);
      held = held ? intersection(held, key) : key;
    }
    return held ?? NO_PERMISSIONS;
  }

  async permissionsOf(resolution: Resolution): Promise<PermissionSet> {
    const cached = this.permissionsCached(resolution);
    if (cached) return cached;
    const tenantId = resolution.tenant.id;
    const access = this.identity.access;
    const [user, creator] = await Promise.all([
      resolution.session ? access.userPermissions(tenantId, resolution.session.userId) : undefined,
      resolution.keyScope?.createdBy
        ? access.userPermissions(tenantId, resolution.keyScope.createdBy)
        : undefined,
    ]);
    return this.#permissionsUncached(resolution, [user, creator]);
  }

  #permissionsUncached(
    resolution: Resolution,
    [user, creator]: [PermissionSet | undefined, PermissionSet | undefined],
  ): PermissionSet {
    let held = user;
    if (resolution.keyScope) {
      const key = this.#keyPermissions(resolution.keyScope, creator);
      held = held ? intersection(held, key) : key;
    }
    return held ?? NO_PERMISSIONS;
  }

  readonly #keyPermissionCache = new WeakMap<
    KeyScope,
    { creator: PermissionSet | undefined; held: PermissionSet }
  >();

  /** Memoised per verified key (its scope object) and its creator's current permissions. */
  #keyPermissions(scope: KeyScope, creator: PermissionSet | undefined): PermissionSet {
    if (scope.permissions === null && scope.createdBy === null) return this.identity.catalogue.all;
    const memo = this.#keyPermissionCache.get(scope);
    if (memo && memo.creator === creator) return memo.held;
    const own =
      scope.permissions === null
        ? this.identity.catalogue.all
        : intersection(freezeSet(scope.permissions), this.identity.catalogue.all);
    const held = creator ? intersection(own, creator) : own;
    this.#keyPermissionCache.set(scope, { creator, held });
    return held;
  }

  /** The shared entities as the shared tables can serve them. */
  sharedEntityView(): EntityView {
    const version = this.#sharedVersion ?? this.versions.codeVersion ?? this.versions.latest;
    if (this.versions.isNewer(version) !== false && this.versions.known(version)) {
      throw new TenantryError('unavailable', 'the shared tables were migrated by a newer deployment');
    }
    const view = this.versions.view(version);
    if (!view) throw new TenantryError('unavailable', 'the shared tables record an unknown entity version');
    return view;
  }

  /** `tenantry migrate`: every tenant's tables to the declared entities; then half-done tenants. */
  async migrate(
    options: MigrateOptions,
    context: ActionContext,
  ): Promise<MigrateReport & { pending?: Awaited<ReturnType<TenantRegistry['finishPending']>> }> {
    const report = await this.fleet.migrate(options);
    await this.#loadVersions(false);
    await this.recordAudit(context, {
      action: 'entities.migrate',
      outcome: report.failed.length > 0 || report.interrupted ? 'failure' : 'success',
      target: `version ${report.targetVersion}`,
      details: {
        migrated: report.migrated,
        failed: report.failed.map((failure) => failure.tenantId ?? failure.unit),
        remaining: report.remaining,
        canary: report.canary,
      },
    }).catch(this.#onBackgroundError);
    if (report.canary || report.interrupted || report.failed.length > 0) return report;
    const pending = await this.tenants.finishPending(context);
    if (this.#databases) {
      await this.db.owner.withSession((session) =>
        this.provisioner.dropTemplates(session, report.targetVersion),
      );
    }
    return { ...report, pending };
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
   * Runs `fn` with a database handle bound to the tenant, for jobs and scripts outside HTTP, and
   * the tenant with its cache. The tenant must exist and be active.
   *
   * @example
   * await tenantry.withTenant(tenantId, (db) => db.query('UPDATE tasks SET done = true WHERE due < now()'));
   * await tenantry.withTenant(tenantId, async (db, { cache }) => cache.del('open-tasks'));
   */
  async withTenant<T>(
    tenantId: string,
    fn: (db: TenantDb, scope: { readonly tenant: Tenant; readonly cache: TenantScopedCache }) => Promise<T>,
  ): Promise<T> {
    const tenant = isUuid(tenantId) ? await this.resolver.tenantById(tenantId) : undefined;
    if (!tenant || tenant.status === 'deleted' || tenant.status === 'provisioning') {
      throw new TenantryError('tenant_not_found', 'no such tenant');
    }
    if (tenant.status !== 'active') throw new TenantryError('tenant_inactive', 'this tenant is inactive');
    await this.loadEntityView(tenant);
    return fn(this.data.forTenant(tenant), { tenant, cache: this.cache.forTenant(tenant) });
  }

  async close(): Promise<void> {
    this.limiter.close();
    await this.apiKeys.close();
    await this.identity.sessions.close();
    await this.redis?.close();
    await this.#databases?.close();
    await this.bus.close();
    if (this.#ownsDatabase) await this.db.close();
  }
}

/** What `reloadConfig` applied. */
export interface ConfigReloadReport {
  /** Reloadable keys that changed and are in force now. */
  readonly changed: readonly string[];
  /** Keys that changed in the file but apply only at restart. */
  readonly restartRequired: readonly string[];
  readonly sync: StaticSyncReport;
}

function reservedSlugs(config: TenantryConfig): ReadonlySet<string> {
  return new Set([...BUILT_IN_RESERVED_SLUGS, ...config.tenancy.reservedSlugs]);
}

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

function maskRedisUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}

const NO_PERMISSIONS: PermissionSet = freezeSet([]);

function tooNew(slug: string): TenantryError {
  return new TenantryError(
    'unavailable',
    `tenant ${slug} was migrated by a newer deployment than this server; it is served by the newer one`,
  );
}

export const openTenantry = (options: OpenTenantryOptions): Promise<Tenantry> => Tenantry.open(options);
