/**
 * Tenantry's library entry. The engine (`openTenantry`), configuration, the tenant model and the
 * error catalogue; the HTTP server is the `tenantry/server` subpath.
 */

export type { ApiKeyInfo, IssuedApiKey } from './auth/api-key-store.js';
export type { Principal } from './auth/delegation.js';
export type { PermissionSet } from './auth/permissions.js';
export { BUILT_IN_ROLES, MANAGEMENT_PERMISSIONS } from './auth/permissions.js';
export type { IsolationLevel, TenantryConfig } from './config/config-schema.js';
export type { LoadConfigOptions } from './config/load-config.js';
export { defineConfig, loadConfig, validateConfigFile } from './config/load-config.js';
export type { Database, Queryable } from './db/database.js';
export type { ErrorCode } from './errors.js';
export { ConfigError, errorCatalogue, isTenantryError, TenantryError } from './errors.js';
export type { Resolution, TenantCredentials } from './resolve/tenant-resolver.js';
export type { ActionContext, Actor } from './runtime/actor.js';
export type { AuditEntry, AuditFilter, AuditPage } from './runtime/audit-log.js';
export type { EngineLogger } from './runtime/engine-logger.js';
export type { QuotaName } from './runtime/quota.js';
export { QuotaExceededError } from './runtime/quota.js';
export type { CacheOutcome, CacheStoreKind, ScopedCache, TenantCache } from './runtime/scoped-cache.js';
export type { StorageMeasurement } from './runtime/storage-meter.js';
export type { Admission } from './runtime/tenant-limiter.js';
export type { ConfigReloadReport, OpenTenantryOptions, TenantUsage } from './tenantry.js';
export { openTenantry, Tenantry } from './tenantry.js';
export { normalizeHost } from './tenants/host.js';
export { checkSlug } from './tenants/slug.js';
export type { StaticSyncReport } from './tenants/static-tenant-sync.js';
export type { PublicTenantView, Tenant, TenantConfig, TenantStatus } from './tenants/tenant.js';
export { publicTenantView } from './tenants/tenant.js';
export type { CreateTenantInput, ReplaceTenantInput, UpdateTenantInput } from './tenants/tenant-input.js';
export type {
  CreatedApiKey,
  CreatedTenant,
  ListTenantsOptions,
  TenantPage,
} from './tenants/tenant-registry.js';
