import { ApiKeyVerifier } from '../auth/api-key-verifier.js';
import { Identity } from '../auth/identity.js';
import { PermissionResolver } from '../auth/permission-resolver.js';
import { TenantKeys } from '../auth/tenant-keys.js';
import type { TenantryConfig } from '../config/config-schema.js';
import { LiveConfig } from '../config/live-config.js';
import type { Database } from '../db/database.js';
import type { MigrationReport } from '../db/migrator.js';
import { DatabaseServers } from '../isolation/database-servers.js';
import { EntitySchemas } from '../isolation/entity-schemas.js';
import { prepareDatabase } from '../isolation/entity-storage.js';
import { FleetMigration } from '../isolation/fleet-migration.js';
import { TenantDatabases } from '../isolation/tenant-databases.js';
import { TenantDataAccess } from '../isolation/tenant-db.js';
import { TenantLocks } from '../isolation/tenant-locks.js';
import { TenantProvisioner } from '../isolation/tenant-provisioner.js';
import { JobRunner } from '../lifecycle/jobs/job-runner.js';
import { JobStore } from '../lifecycle/jobs/job-store.js';
import type { LifecycleDeps } from '../lifecycle/lifecycle-deps.js';
import type { MoveDeps } from '../lifecycle/move/tenant-move.js';
import type { BackupDeps } from '../lifecycle/tenant-backup.js';
import { TenantUsageMeter } from '../lifecycle/tenant-usage.js';
import { recordCrossTenant } from '../resolve/cross-tenant-audit.js';
import { TenantCache } from '../resolve/tenant-cache.js';
import { TenantResolver } from '../resolve/tenant-resolver.js';
import { ChangeBus } from '../runtime/change-bus.js';
import { type EngineLogger, silentLogger } from '../runtime/engine-logger.js';
import { FailureLimiter } from '../runtime/failure-limiter.js';
import { Metrics } from '../runtime/metrics.js';
import { RedisConnection } from '../runtime/redis-connection.js';
import { ScopedCache } from '../runtime/scoped-cache.js';
import { TenantLimiter } from '../runtime/tenant-limiter.js';
import { isReservedSlug } from '../tenants/slug.js';
import { TenantEditor } from '../tenants/tenant-editor.js';
import { TenantStore } from '../tenants/tenant-store.js';
import { TENANTRY_VERSION } from '../version.js';
import { ConfigReloader } from './config-reloader.js';
import { openDatabase } from './open-database.js';

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
  /**
   * Create the embedded database when its data directory holds none (default true: a library
   * user's first start needs nothing else). The CLI's commands pass false: they work on the
   * server's database and fail with DataDirMissingError instead of making a new one.
   */
  readonly createDataDir?: boolean;
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

interface Wiring {
  readonly config: TenantryConfig;
  readonly db: Database;
  readonly ownsDatabase: boolean;
  readonly bus: ChangeBus;
  readonly migration: MigrationReport | undefined;
  readonly onBackgroundError: (error: unknown) => void;
  readonly logger: EngineLogger;
  readonly redis: boolean;
  readonly storageMeasureIntervalMs: number | undefined;
}

/**
 * The composition root: builds every component of one process and wires them together, each
 * once, in dependency order. Internal: the library's surface is `Tenantry`; the front ends
 * (HTTP, CLI, control socket) and operations reach the components here.
 */
export class Engine {
  readonly live: LiveConfig;
  readonly db: Database;
  readonly bus: ChangeBus;
  readonly logger: EngineLogger;
  readonly migration: MigrationReport | undefined;
  readonly onBackgroundError: (error: unknown) => void;
  readonly metrics: Metrics;
  /** Shared state across server processes (limits, cache); undefined without REDIS_URL. */
  readonly redis: RedisConnection | undefined;
  readonly servers: DatabaseServers;
  readonly locks: TenantLocks;
  readonly databases: TenantDatabases | undefined;
  readonly schemas: EntitySchemas;
  readonly provisioner: TenantProvisioner;
  readonly data: TenantDataAccess;
  readonly fleet: FleetMigration;
  readonly store: TenantStore;
  readonly editor: TenantEditor;
  readonly tenantCache: TenantCache;
  readonly limiter: TenantLimiter;
  /** Failed credential checks per client address. */
  readonly keyFailures: FailureLimiter;
  /** Failed checks per key id, for addresses over their own allowance. */
  readonly keyIdFailures: FailureLimiter;
  readonly cache: ScopedCache;
  readonly identity: Identity;
  readonly permissions: PermissionResolver;
  readonly apiKeys: ApiKeyVerifier;
  readonly keys: TenantKeys;
  readonly resolver: TenantResolver;
  readonly usage: TenantUsageMeter;
  readonly lifecycle: LifecycleDeps;
  /** What backups and restores work with: the lifecycle's components and the tenants' data. */
  readonly archives: BackupDeps;
  /** What tenant moves work with. */
  readonly moves: MoveDeps;
  /** Long operations in the background (backups and exports started over HTTP, scheduled backups). */
  readonly jobs: JobRunner;
  readonly reloader: ConfigReloader;
  readonly #ownsDatabase: boolean;

  private constructor(wiring: Wiring) {
    this.live = new LiveConfig(wiring.config);
    this.db = wiring.db;
    this.bus = wiring.bus;
    this.logger = wiring.logger;
    this.migration = wiring.migration;
    this.onBackgroundError = wiring.onBackgroundError;
    this.#ownsDatabase = wiring.ownsDatabase;
    const config = wiring.config;
    this.servers = new DatabaseServers(this.db, this.bus, this.live);
    this.locks = new TenantLocks(this.db);
    this.databases =
      this.db.driver === 'postgres' && config.database.url
        ? new TenantDatabases({
            urls: (server) => this.servers.urls(server),
            maxConnections: config.database.maxTenantConnections,
            perDatabase: config.database.connectionsPerTenantDatabase,
            statementCacheSize: config.database.statementCacheSize,
          })
        : undefined;
    this.schemas = new EntitySchemas(this.db, this.live, this.databases);
    this.provisioner = new TenantProvisioner(this.live, this.databases, this.servers);
    this.metrics = this.#metrics();
    this.redis = wiring.redis && config.redisUrl ? this.#redisConnection(config.redisUrl) : undefined;
    this.store = new TenantStore(this.db.owner, () => this.live.current.plans);
    this.data = new TenantDataAccess(
      this.db,
      this.live,
      this.databases,
      (tenant, seconds) => this.metrics.observeDatabase(tenant, seconds),
      (id) => this.store.findById(id),
    );
    this.fleet = new FleetMigration({
      db: this.db,
      config: this.live,
      bus: this.bus,
      locks: this.locks,
      databases: this.databases,
      servers: this.servers,
    });
    const rules = () => this.live.current;
    this.editor = new TenantEditor({ owner: this.db.owner, bus: this.bus, store: this.store, rules });
    this.tenantCache = new TenantCache(this.bus, {
      maxTenants: config.tenancy.cacheSize,
      refresh: (ids) => this.store.findByIds(ids),
      onRefreshError: (error) => this.onBackgroundError(error),
    });
    const { rateLimits } = config;
    this.limiter = new TenantLimiter({
      redis: this.redis,
      prefix: rateLimits.redisPrefix,
      leaseMs: rateLimits.concurrencyLeaseSeconds * 1000,
      onFallback: () => this.metrics.limiterFallback('tenant_limits'),
    });
    this.keyFailures = this.#failureLimiter('key-failures');
    // From an address over its allowance, a key is still checked while its own id is under one.
    this.keyIdFailures = this.#failureLimiter('key-id-failures');
    this.cache = this.#scopedCache();
    this.identity = this.#identity();
    this.permissions = new PermissionResolver(this.identity.access, this.identity.catalogue);
    this.apiKeys = new ApiKeyVerifier({
      db: this.db.owner,
      bus: this.bus,
      iterations: config.apiKeys.iterations,
      cacheSize: config.apiKeys.cacheSize,
      cacheTtlSeconds: config.apiKeys.cacheTtlSeconds,
      onBackgroundError: this.onBackgroundError,
    });
    this.keys = new TenantKeys({
      owner: this.db.owner,
      bus: this.bus,
      store: this.store,
      catalogue: this.identity.catalogue,
      iterations: () => this.live.current.apiKeys.iterations,
    });
    this.resolver = this.#resolver();
    this.usage = new TenantUsageMeter({
      db: this.db,
      config: this.live,
      data: this.data,
      schemas: this.schemas,
      storageMeasureIntervalMs: wiring.storageMeasureIntervalMs,
    });
    this.lifecycle = {
      db: this.db,
      bus: this.bus,
      store: this.store,
      rules,
      keyIterations: () => this.live.current.apiKeys.iterations,
      provisioner: this.provisioner,
      locks: this.locks,
      servers: this.servers,
      storage: this.schemas,
    };
    this.archives = { ...this.lifecycle, data: this.data, tenantryVersion: TENANTRY_VERSION };
    this.moves = { ...this.lifecycle, data: this.data, moveSettings: () => this.live.current.moves };
    this.jobs = new JobRunner(new JobStore(this.db.owner), (error) => this.onBackgroundError(error));
    this.reloader = new ConfigReloader(this);
  }

  /** Failed credential checks counted by `name` (per address, per key id): the same allowance. */
  #failureLimiter(name: string): FailureLimiter {
    const { rateLimits } = this.live.current;
    return new FailureLimiter({
      redis: this.redis,
      prefix: rateLimits.redisPrefix,
      name,
      failures: rateLimits.keyFailuresPerMinute,
      windowSeconds: 60,
      blockSeconds: rateLimits.keyFailureBlockSeconds,
      onFallback: () => this.metrics.limiterFallback('key_failures'),
    });
  }

  /** The configuration in force (a reload replaces it). */
  get config(): TenantryConfig {
    return this.live.current;
  }

  static async open(options: OpenTenantryOptions): Promise<Engine> {
    const db =
      options.database ??
      (await openDatabase(options.config, {
        ...(options.ownerConnections === undefined ? {} : { ownerConnections: options.ownerConnections }),
        ...(options.createDataDir === undefined ? {} : { createDataDir: options.createDataDir }),
      }));
    const onBackgroundError = options.onBackgroundError ?? (() => undefined);
    try {
      const migration =
        options.migrate === false
          ? undefined
          : await prepareDatabase(db, options.config, options.verifyEntities ?? false);
      const bus = new ChangeBus();
      await bus.start(db);
      const engine = new Engine({
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
      if (engine.redis && !(await engine.redis.ready(2_000))) {
        engine.logger.warn(
          { redis: maskRedisUrl(options.config.redisUrl ?? '') },
          'Redis is unreachable: each process limits on its own and the shared tenant cache misses until it is back',
        );
      }
      try {
        await engine.schemas.load(true);
      } catch (error) {
        await engine.close().catch(() => undefined);
        throw error;
      }
      bus.subscribe((change) => {
        if (change === 'all' || change.kind === 'entities')
          engine.schemas.load(false).catch(onBackgroundError);
        // Notifications may have been missed: server URLs are read again at their next use.
        if (change === 'all') engine.servers.forget();
        else if (change.kind === 'server') {
          engine.servers.forget(change.name);
          engine.databases?.releaseServer(change.name).catch(onBackgroundError);
        }
      });
      return engine;
    } catch (error) {
      if (options.database === undefined) await db.close().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    // A job in flight finishes first: one cut short would only be `interrupted`, and need a rerun.
    await this.jobs.idle();
    this.tenantCache.close();
    this.limiter.close();
    await this.apiKeys.close();
    await this.identity.sessions.close();
    await this.redis?.close();
    await this.databases?.close();
    await this.bus.close();
    if (this.#ownsDatabase) await this.db.close();
  }

  #metrics(): Metrics {
    const databases = this.databases;
    return new Metrics({
      tenantLabels: this.config.metrics.tenantLabels,
      control: this.db.owner,
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
  }

  #redisConnection(url: string): RedisConnection {
    return new RedisConnection(url, {
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
    });
  }

  #scopedCache(): ScopedCache {
    return new ScopedCache({
      settings: { ...this.config.cache, prefix: this.config.rateLimits.redisPrefix },
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
  }

  #identity(): Identity {
    const config = this.config;
    return new Identity({
      db: this.db,
      bus: this.bus,
      entities: config.entities,
      settings: { ...config.auth, secretIterations: config.apiKeys.iterations },
      redis: this.redis,
      redisPrefix: config.rateLimits.redisPrefix,
      onLimiterFallback: () => this.metrics.limiterFallback('login_failures'),
      onLoginLimited: () => this.metrics.rateLimited(undefined, 'login_failures'),
      onBackgroundError: this.onBackgroundError,
      userQuota: async (tenantId) => {
        const tenant = await this.store.findById(tenantId);
        const max = tenant?.effective.limits.maxUsers;
        return max === undefined || !tenant ? undefined : { max, slug: tenant.slug };
      },
    });
  }

  #resolver(): TenantResolver {
    const credentials = { keys: this.apiKeys, sessions: this.identity.sessions };
    return new TenantResolver(this.store, credentials, this.tenantCache, {
      baseDomain: this.config.server.baseDomain,
      isReservedSlug: (label) => isReservedSlug(label, this.live.current.tenancy.reservedSlugs),
      onCrossTenant: async ({ claims }, context) => {
        const named = (source: string) => claims.find((claim) => claim.source === source)?.tenantId;
        await recordCrossTenant(this.db.owner, context, claims, named('apiKey') ?? named('session')).catch(
          this.onBackgroundError,
        );
      },
    });
  }
}

function maskRedisUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
