import Type, { type Static } from 'typebox';
import {
  type Tenant,
  TenantBrandingSchema,
  type TenantConfig,
  TenantConfigSchema,
  TenantLimitsSchema,
} from './tenant.js';
import type { TenantConfigView } from './tenant-config-paths.js';

const Status = Type.Union([
  Type.Literal('provisioning'),
  Type.Literal('restoring'),
  Type.Literal('active'),
  Type.Literal('inactive'),
  Type.Literal('deleted'),
]);
const Isolation = Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]);

/**
 * A tenant as operators see it, everywhere: the admin routes, the CLI's `--json`, OpenAPI and
 * the library's typed calls. A field added to the tenant is added here once.
 */
export const TenantViewSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  slug: Type.String(),
  status: Status,
  isolation: Isolation,
  hosts: Type.Array(Type.String()),
  config: TenantConfigSchema,
  schemaVersion: Type.Union([Type.Integer(), Type.Null()], {
    description: 'Entity-schema version of its tables (null while provisioning)',
  }),
  server: Type.Union([Type.String(), Type.Null()], { description: 'Database server of a database tenant' }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});
export type TenantView = Static<typeof TenantViewSchema>;

export function tenantView(tenant: Tenant): TenantView {
  return {
    id: tenant.id,
    name: tenant.name,
    slug: tenant.slug,
    status: tenant.status,
    isolation: tenant.isolation,
    hosts: [...tenant.hosts],
    config: tenant.config as TenantConfig,
    schemaVersion: tenant.schemaVersion,
    server: tenant.server,
    createdAt: tenant.createdAt.toISOString(),
    updatedAt: tenant.updatedAt.toISOString(),
  };
}

/** What tenant actors see of their tenant (`/tenant-info`): no limits or private settings. */
export const PublicTenantViewSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  slug: Type.String(),
  status: Status,
  isolation: Isolation,
  hosts: Type.Array(Type.String()),
  config: Type.Object({
    features: Type.Optional(Type.Array(Type.String())),
    branding: Type.Optional(
      Type.Object({
        displayName: Type.Optional(Type.String()),
        primaryColor: Type.Optional(Type.String()),
        secondaryColor: Type.Optional(Type.String()),
        logoUrl: Type.Optional(Type.String()),
      }),
    ),
  }),
});
export type PublicTenantView = Static<typeof PublicTenantViewSchema>;

const BRANDING_FIELDS = Object.keys(TenantBrandingSchema.properties) as (keyof TenantConfig['branding'] &
  string)[];

export function publicTenantView(tenant: Tenant): PublicTenantView {
  const config: PublicTenantView['config'] = {};
  const { features, branding } = tenant.effective;
  if (features.length > 0) config.features = [...features];
  // The schema's fields only: the view may be serialized without the response schema's filter.
  const shown: Record<string, unknown> = {};
  for (const field of BRANDING_FIELDS) if (branding[field] !== undefined) shown[field] = branding[field];
  if (Object.keys(shown).length > 0) config.branding = shown;
  return {
    id: tenant.id,
    name: tenant.name,
    slug: tenant.slug,
    status: tenant.status,
    isolation: tenant.isolation,
    hosts: [...tenant.hosts],
    config,
  };
}

/** A tenant's configuration: its plan, its overrides and the effective result. */
export const TenantConfigViewSchema = Type.Object({
  plan: Type.Union([Type.String(), Type.Null()]),
  overrides: TenantConfigSchema,
  effective: Type.Object({
    plan: Type.Optional(Type.String()),
    features: Type.Array(Type.String()),
    limits: TenantLimitsSchema,
    branding: TenantBrandingSchema,
    settings: Type.Record(Type.String(), Type.Unknown()),
  }),
});
export type TenantConfigJson = Static<typeof TenantConfigViewSchema>;

export function tenantConfigJson(view: TenantConfigView): TenantConfigJson {
  return {
    plan: view.plan,
    overrides: view.overrides as TenantConfig,
    effective: {
      ...(view.effective.plan === undefined ? {} : { plan: view.effective.plan }),
      features: [...view.effective.features],
      limits: { ...view.effective.limits },
      branding: { ...view.effective.branding },
      settings: { ...view.effective.settings },
    },
  };
}
