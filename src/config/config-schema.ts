import Type, { type Static } from 'typebox';
import type { Entity } from '../entities/entity.js';
import { type IsolationLevel, PlanSchema, type Plans } from '../tenants/tenant.js';

export type { IsolationLevel };

import { type StaticTenant, StaticTenantSchema } from './static-tenants.js';

const Port = Type.Integer({ minimum: 0, maximum: 65535 });

export const ServerConfigSchema = Type.Object(
  {
    port: Type.Optional(Port),
    host: Type.Optional(Type.String({ minLength: 1 })),
    /**
     * Honour X-Forwarded-Host/-For, only behind proxies that set them: `true` trusts every hop
     * (the client's own entry included: only behind a proxy that overwrites the header), a number
     * the last N hops, a list the proxies at those addresses or networks (`10.0.0.0/8`, `loopback`).
     */
    trustProxy: Type.Optional(
      Type.Union([
        Type.Boolean(),
        Type.Integer({ minimum: 1, maximum: 10 }),
        Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100 }),
      ]),
    ),
    /** `<slug>.<baseDomain>` resolves to the tenant with that slug. */
    baseDomain: Type.Optional(Type.String({ minLength: 1, maxLength: 253 })),
    bodyLimitBytes: Type.Optional(Type.Integer({ minimum: 1024, maximum: 64 * 1024 * 1024 })),
    shutdownGraceMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 600_000 })),
  },
  { additionalProperties: false },
);

export const DatabaseConfigSchema = Type.Object(
  {
    url: Type.Optional(Type.String({ minLength: 1 })),
    adminUrl: Type.Optional(Type.String({ minLength: 1 })),
    maxConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    /** The role tenant transactions run as: owns nothing, no BYPASSRLS. */
    runtimeRole: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_]{0,62}$' })),
    /** Connections open across all tenant databases at most. */
    maxTenantConnections: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    /**
     * Connections of each tenant database's pool (default 2): more lets one busy database tenant
     * run more statements at once, and leaves room for fewer pools open at once
     * (maxTenantConnections / this).
     */
    connectionsPerTenantDatabase: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    /** Copy new database tenants from a pre-built template database (default true). */
    templates: Type.Optional(Type.Boolean()),
    /**
     * Prepared statements each connection keeps for tenant statements (parsed and planned once
     * per connection); 0 prepares none, for a pooler that cannot hold them.
     */
    statementCacheSize: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
  },
  { additionalProperties: false },
);

/**
 * PBKDF2-SHA256 iterations of new API keys and client secrets, and the default. A secret of 256
 * random bits cannot be guessed offline at any iteration count, so iterations above the floor buy
 * no protection and cost every creation and every uncached or failed check (docs/architecture.md).
 */
export const MIN_KEY_ITERATIONS = 100_000;

export const ApiKeysConfigSchema = Type.Object(
  {
    /** PBKDF2-SHA256 iterations for new keys; existing keys keep theirs. */
    iterations: Type.Optional(Type.Integer({ minimum: MIN_KEY_ITERATIONS, maximum: 10_000_000 })),
    /** Verified keys kept in memory (never the plaintext), so valid keys skip the slow hash. */
    cacheSize: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000_000 })),
    cacheTtlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
  },
  { additionalProperties: false },
);

export const TenancyConfigSchema = Type.Object(
  {
    /** Slugs no tenant may take, added to the built-in list (admin, api, www, ...). */
    reservedSlugs: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 63 }), { maxItems: 10_000 }),
    ),
    defaultIsolation: Type.Optional(
      Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]),
    ),
    /** statement_timeout of tenant transactions unless the tenant's limits say otherwise. */
    statementTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
    /** The plan of tenants created without one. */
    defaultPlan: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,39}$' })),
    /**
     * Tenants each process keeps in memory for resolution, with their host and slug lookups
     * (default 20,000, about 4 KB each in use): more than the tenants busy at once, or requests
     * past the bound read their tenant from the database.
     */
    cacheSize: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
  },
  { additionalProperties: false },
);

export const MetricsConfigSchema = Type.Object(
  {
    /** The busiest tenants that keep a label of their own; the others share "other". */
    tenantLabels: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
    /** Serve /metrics without the admin token (only where the network keeps it private). */
    public: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const RateLimitsConfigSchema = Type.Object(
  {
    /** Failed API-key checks one client address may make per minute before it is blocked. */
    keyFailuresPerMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    /** How long a client address stays blocked after too many failed checks. */
    keyFailureBlockSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400 })),
    /** A request slot taken under a concurrency cap is freed after this long even if its process died. */
    /** At least 5: the lease is renewed every third of it, and never more often than once a second. */
    concurrencyLeaseSeconds: Type.Optional(Type.Integer({ minimum: 5, maximum: 3_600 })),
    /** Prefix of every Redis key Tenantry writes (several deployments may share one Redis). */
    redisPrefix: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9:_-]{1,64}$' })),
  },
  { additionalProperties: false },
);

export const AuthConfigSchema = Type.Object(
  {
    /** Accept the admin token on /admin routes; false leaves them to global admin users. */
    adminToken: Type.Optional(Type.Boolean()),
    sessionTtlHours: Type.Optional(Type.Number({ minimum: 0.05, maximum: 24 * 90 })),
    /** Failed logins one account may have before it is locked for `loginLockMinutes`. */
    loginFailuresPerAccount: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000 })),
    loginLockMinutes: Type.Optional(Type.Number({ minimum: 0.1, maximum: 1_440 })),
    /** Failed logins one client address may have per minute. */
    loginFailuresPerAddress: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
    /** Mark the session cookie Secure (only a plain-http development set-up wants false). */
    secureCookie: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const CacheConfigSchema = Type.Object(
  {
    /** memory: each process its own (deletes reach the others); redis: shared (needs REDIS_URL). Default: redis when REDIS_URL is set. */
    store: Type.Optional(Type.Union([Type.Literal('memory'), Type.Literal('redis')])),
    defaultTtlSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 86_400 })),
    /** In-process store bounds. */
    maxEntries: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    maxMegabytes: Type.Optional(Type.Number({ minimum: 1, maximum: 65_536 })),
    /** The part of those bounds one tenant may hold (its oldest entries make room past it). */
    maxTenantShare: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
  },
  { additionalProperties: false },
);

export const BackupsConfigSchema = Type.Object(
  {
    /** Where jobs put what they make (backups, exports); default `<dataDir>/backups`. */
    directory: Type.Optional(Type.String({ minLength: 1 })),
    /** How often every tenant is backed up (`30m`, `6h`, `1d`); absent: never on a schedule. */
    schedule: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,4}[mhd]$' })),
    /** Scheduled backups kept per tenant, the newest ones (default 7). */
    keep: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    /** Exports a tenant may start per hour (default 6). */
    exportsPerHour: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000 })),
    /** How long a finished export can be downloaded before its file is deleted (default 168: a week). */
    exportRetentionHours: Type.Optional(Type.Integer({ minimum: 1, maximum: 87_600 })),
  },
  { additionalProperties: false },
);

export const MovesConfigSchema = Type.Object(
  {
    /** How long a moved tenant's old copy is kept (sealed) before it is dropped (default 600). */
    graceSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 31_536_000 })),
    /** The longest write freeze a move may take; a longer catch-up is abandoned and tried again (default 2000). */
    maxFreezeMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 60_000 })),
  },
  { additionalProperties: false },
);

export const ConfigFileSchema = Type.Object(
  {
    server: Type.Optional(ServerConfigSchema),
    database: Type.Optional(DatabaseConfigSchema),
    dataDir: Type.Optional(Type.String({ minLength: 1 })),
    apiKeys: Type.Optional(ApiKeysConfigSchema),
    tenancy: Type.Optional(TenancyConfigSchema),
    metrics: Type.Optional(MetricsConfigSchema),
    rateLimits: Type.Optional(RateLimitsConfigSchema),
    auth: Type.Optional(AuthConfigSchema),
    cache: Type.Optional(CacheConfigSchema),
    backups: Type.Optional(BackupsConfigSchema),
    moves: Type.Optional(MovesConfigSchema),
    /** Application tables; validated in depth by `normaliseEntities`. */
    entities: Type.Optional(Type.Unknown()),
    /** Plans by name: default features, limits, branding and settings of their tenants. */
    plans: Type.Optional(Type.Record(Type.String({ pattern: '^[a-z][a-z0-9-]{0,39}$' }), PlanSchema)),
    /** A JSON Schema that every tenant's effective `settings` must satisfy. */
    settingsSchema: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    /** Static tenants: created and kept as declared at start and on reload (SIGHUP). */
    tenants: Type.Optional(Type.Array(StaticTenantSchema, { maxItems: 100_000 })),
  },
  { additionalProperties: false },
);

export type ConfigFile = Static<typeof ConfigFileSchema>;

/** The effective configuration: file, then environment, then defaults. Frozen. */
/** Which proxies' forwarding headers count (see `server.trustProxy`). */
export type TrustProxy = boolean | number | readonly string[];

export interface TenantryConfig {
  readonly source: string | undefined;
  readonly server: {
    readonly port: number;
    readonly host: string;
    readonly trustProxy: TrustProxy;
    readonly baseDomain: string;
    readonly bodyLimitBytes: number;
    readonly shutdownGraceMs: number;
  };
  readonly database: {
    /** Undefined means the embedded PGlite database in `dataDir`. */
    readonly url: string | undefined;
    readonly adminUrl: string | undefined;
    /** Where `url` and `adminUrl` were read from (messages name it); undefined: set in code. */
    readonly urlSource: 'DATABASE_URL' | 'database.url' | undefined;
    readonly adminUrlSource: 'DATABASE_ADMIN_URL' | 'database.adminUrl' | undefined;
    readonly maxConnections: number;
    readonly runtimeRole: string;
    readonly maxTenantConnections: number;
    readonly connectionsPerTenantDatabase: number;
    readonly templates: boolean;
    readonly statementCacheSize: number;
  };
  readonly dataDir: string;
  readonly adminToken: string | undefined;
  readonly apiKeys: {
    readonly iterations: number;
    readonly cacheSize: number;
    readonly cacheTtlSeconds: number;
  };
  readonly tenancy: {
    readonly reservedSlugs: readonly string[];
    readonly defaultIsolation: IsolationLevel;
    readonly statementTimeoutMs: number;
    readonly defaultPlan: string | undefined;
    readonly cacheSize: number;
  };
  readonly entities: readonly Entity[];
  readonly plans: Plans;
  /** JSON Schema of tenant settings (checked to compile at load). */
  readonly settingsSchema: Readonly<Record<string, unknown>> | undefined;
  /** Tenants the config file declares; undefined: the file manages no tenants (no sync). */
  readonly tenants: readonly StaticTenant[] | undefined;
  readonly logLevel: string;
  readonly metrics: {
    readonly tenantLabels: number;
    readonly public: boolean;
  };
  readonly logRetentionDays: number;
  readonly backups: {
    readonly directory: string;
    /** Undefined: no scheduled backups. */
    readonly scheduleMs: number | undefined;
    readonly keep: number;
    readonly exportsPerHour: number;
    readonly exportRetentionHours: number;
  };
  readonly moves: {
    readonly graceSeconds: number;
    readonly maxFreezeMs: number;
  };
  /** Shared limits and cache across processes; undefined: each process keeps its own. */
  readonly redisUrl: string | undefined;
  readonly cache: {
    readonly store: 'memory' | 'redis';
    readonly defaultTtlSeconds: number;
    readonly maxEntries: number;
    readonly maxBytes: number;
    readonly maxTenantShare: number;
  };
  readonly auth: {
    readonly adminToken: boolean;
    readonly sessionTtlSeconds: number;
    readonly loginFailuresPerAccount: number;
    readonly loginLockSeconds: number;
    readonly loginFailuresPerAddress: number;
    readonly secureCookie: boolean;
  };
  readonly rateLimits: {
    readonly keyFailuresPerMinute: number;
    readonly keyFailureBlockSeconds: number;
    readonly concurrencyLeaseSeconds: number;
    readonly redisPrefix: string;
  };
}
