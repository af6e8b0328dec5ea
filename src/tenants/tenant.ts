import Type, { type Static } from 'typebox';

export type TenantStatus = 'provisioning' | 'restoring' | 'active' | 'inactive' | 'deleted';

/**
 * A tenant still being built (`provisioning`) or filled from an archive (`restoring`): it never
 * resolves, and no operation but its own, a repair or a purge touches it.
 */
export function isBeingBuilt(status: TenantStatus): boolean {
  return status === 'provisioning' || status === 'restoring';
}
/** Where a tenant's rows live: shared tables, a schema of its own, or a database of its own. */
export type IsolationLevel = 'row' | 'schema' | 'database';

export const ISOLATION_LEVELS: readonly IsolationLevel[] = ['row', 'schema', 'database'];

/**
 * Counts and rates above this are refused: far past any real limit (no limit is "no limit"), and
 * low enough that headers and arithmetic stay exact integers.
 */
const LIMIT_MAX = 1_000_000_000;

/** The limits a tenant (or its plan) may set; every one is optional. */
export const TenantLimitsSchema = Type.Object(
  {
    requestsPerSecond: Type.Optional(Type.Number({ minimum: 0, maximum: LIMIT_MAX })),
    burst: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMIT_MAX })),
    maxConcurrent: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMIT_MAX })),
    statementTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000 })),
    maxRows: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMIT_MAX })),
    maxRowsPerEntity: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMIT_MAX })),
    maxStorageMb: Type.Optional(Type.Number({ minimum: 0, maximum: LIMIT_MAX })),
    maxUsers: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMIT_MAX })),
    maxApiKeys: Type.Optional(Type.Integer({ minimum: 0, maximum: LIMIT_MAX })),
  },
  { additionalProperties: false },
);

export type TenantLimits = Static<typeof TenantLimitsSchema>;

export const TenantBrandingSchema = Type.Object(
  {
    displayName: Type.Optional(Type.String({ maxLength: 200 })),
    primaryColor: Type.Optional(Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })),
    secondaryColor: Type.Optional(Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })),
    logoUrl: Type.Optional(Type.String({ maxLength: 2048, pattern: '^https://' })),
  },
  { additionalProperties: false },
);

const FeaturesSchema = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
  maxItems: 200,
  uniqueItems: true,
});

/** What a plan gives its tenants by default; a tenant may override any of it. */
export const PlanSchema = Type.Object(
  {
    features: Type.Optional(FeaturesSchema),
    limits: Type.Optional(TenantLimitsSchema),
    branding: Type.Optional(TenantBrandingSchema),
    settings: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Type.Unknown())),
  },
  { additionalProperties: false },
);

export type Plan = Static<typeof PlanSchema>;

export const TenantConfigSchema = Type.Object(
  {
    /** The plan whose defaults apply (from `plans` in the config file). */
    plan: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9-]{0,39}$' })),
    /** Feature flags the tenant has, replacing its plan's list. Public. */
    features: Type.Optional(FeaturesSchema),
    /** Limits (requests per second, rows, ...), each overriding its plan's. Private to operators. */
    limits: Type.Optional(TenantLimitsSchema),
    /** How the tenant's UI looks, each value overriding its plan's. Public. */
    branding: Type.Optional(TenantBrandingSchema),
    /** Free-form application settings over its plan's (validated by `settingsSchema`). Private. */
    settings: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Type.Unknown())),
  },
  { additionalProperties: false },
);

export type TenantConfig = Static<typeof TenantConfigSchema>;

/** The sections of a tenant's config, each settable on its own (and ownable by the config file). */
export const CONFIG_SECTIONS = ['plan', 'features', 'limits', 'branding', 'settings'] as const;

/** The fields of a tenant a config file can own; `slug` is its identity and always owned. */
export type ManagedField =
  | 'slug'
  | 'name'
  | 'hosts'
  | 'plan'
  | 'features'
  | 'limits'
  | 'branding'
  | 'settings';

export type TenantBranding = Static<typeof TenantBrandingSchema>;

/** Plans by name, from the config file. */
export type Plans = Readonly<Record<string, Plan>>;

/** A tenant's configuration with its plan's defaults filled in: what the engine acts on. */
export interface EffectiveTenantConfig {
  readonly plan: string | undefined;
  readonly features: readonly string[];
  readonly limits: Readonly<TenantLimits>;
  readonly branding: Readonly<TenantBranding>;
  readonly settings: Readonly<Record<string, unknown>>;
}

/**
 * The plan's values with the tenant's overrides on top: a tenant's `features` list replaces its
 * plan's; limits, branding and top-level settings override one key at a time.
 */
export function effectiveConfig(config: TenantConfig, plans: Plans): EffectiveTenantConfig {
  const plan = config.plan === undefined ? undefined : plans[config.plan];
  return Object.freeze({
    plan: config.plan,
    features: Object.freeze([...(config.features ?? plan?.features ?? [])]),
    limits: Object.freeze({ ...plan?.limits, ...config.limits }),
    branding: Object.freeze({ ...plan?.branding, ...config.branding }),
    settings: Object.freeze({ ...plan?.settings, ...config.settings }),
  });
}

/** A tenant as the registry knows it. Immutable: a change makes a new value. */
export interface Tenant {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: TenantStatus;
  readonly isolation: IsolationLevel;
  /** What was set on the tenant itself (its overrides and its plan's name). */
  readonly config: Readonly<TenantConfig>;
  /** Its plan's defaults with its overrides on top. */
  readonly effective: EffectiveTenantConfig;
  /** Whether the tenant has a feature, from its plan or its own list. */
  hasFeature(name: string): boolean;
  readonly hosts: readonly string[];
  /** The entity-schema version its tables were built at (null while provisioning). */
  readonly schemaVersion: number | null;
  /** The database server of a `database` tenant. */
  readonly server: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface TenantRow {
  id: string;
  slug: string;
  name: string;
  status: TenantStatus;
  isolation: IsolationLevel;
  config: TenantConfig;
  hosts: string[] | null;
  schema_version: number | null;
  server: string | null;
  created_at: Date | string;
  updated_at: Date | string;
  [column: string]: unknown;
}

export function tenantFromRow(row: TenantRow, plans: Plans = {}): Tenant {
  const config = row.config ?? {};
  const effective = effectiveConfig(config, plans);
  const features = new Set(effective.features);
  return Object.freeze({
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    isolation: row.isolation,
    config: Object.freeze(config),
    effective,
    hasFeature: (name: string) => features.has(name),
    hosts: Object.freeze([...(row.hosts ?? [])].sort()),
    schemaVersion: row.schema_version === null ? null : Number(row.schema_version),
    server: row.server ?? null,
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  });
}

/** The SELECT list that builds a TenantRow, hosts aggregated. Alias `t` must be tenantry.tenants. */
export const TENANT_COLUMNS = `t.id, t.slug, t.name, t.status, t.isolation, t.config, t.schema_version, t.server, t.created_at, t.updated_at,
  coalesce((SELECT array_agg(h.host ORDER BY h.host) FROM tenantry.tenant_hosts h WHERE h.tenant_id = t.id), '{}') AS hosts`;
