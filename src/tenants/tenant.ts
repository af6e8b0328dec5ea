import Type, { type Static } from 'typebox';
import type { IsolationLevel } from '../config/config-schema.js';

export type TenantStatus = 'provisioning' | 'active' | 'inactive' | 'deleted';
export type { IsolationLevel };

export const ISOLATION_LEVELS: readonly IsolationLevel[] = ['row', 'schema', 'database'];

export const TenantConfigSchema = Type.Object(
  {
    /** Feature flags the tenant has. Public. */
    features: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 200, uniqueItems: true }),
    ),
    /** Limits (requests per second, rows, ...). Private to operators. */
    limits: Type.Optional(
      Type.Record(Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9]{0,63}$' }), Type.Number({ minimum: 0 })),
    ),
    /** How the tenant's UI looks. Public. */
    branding: Type.Optional(
      Type.Object(
        {
          displayName: Type.Optional(Type.String({ maxLength: 200 })),
          primaryColor: Type.Optional(Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })),
          secondaryColor: Type.Optional(Type.String({ pattern: '^#[0-9a-fA-F]{6}$' })),
          logoUrl: Type.Optional(Type.String({ maxLength: 2048, pattern: '^https://' })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Free-form application settings. Private to operators. */
    settings: Type.Optional(Type.Record(Type.String({ maxLength: 200 }), Type.Unknown())),
  },
  { additionalProperties: false },
);

export type TenantConfig = Static<typeof TenantConfigSchema>;

/** A tenant as the registry knows it. Immutable: a change makes a new value. */
export interface Tenant {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly status: TenantStatus;
  readonly isolation: IsolationLevel;
  readonly config: Readonly<TenantConfig>;
  readonly hosts: readonly string[];
  /** The entity-schema version its tables were built at (null while provisioning). */
  readonly schemaVersion: number | null;
  /** The database server of a `database` tenant. */
  readonly server: string | null;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** What a tenant's own actors may see of it: no limits, no private settings. */
export interface PublicTenantView {
  readonly id: string;
  readonly name: string;
  readonly slug: string;
  readonly status: TenantStatus;
  readonly isolation: IsolationLevel;
  readonly hosts: readonly string[];
  readonly config: Pick<TenantConfig, 'features' | 'branding'>;
}

export function publicTenantView(tenant: Tenant): PublicTenantView {
  const config: Pick<TenantConfig, 'features' | 'branding'> = {};
  if (tenant.config.features) config.features = tenant.config.features;
  if (tenant.config.branding) config.branding = tenant.config.branding;
  return {
    id: tenant.id,
    name: tenant.name,
    slug: tenant.slug,
    status: tenant.status,
    isolation: tenant.isolation,
    hosts: tenant.hosts,
    config,
  };
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

export function tenantFromRow(row: TenantRow): Tenant {
  return Object.freeze({
    id: row.id,
    slug: row.slug,
    name: row.name,
    status: row.status,
    isolation: row.isolation,
    config: Object.freeze(row.config ?? {}),
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
