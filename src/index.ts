/**
 * Tenantry's library entry. The engine (`openTenantry`) with every operation as a typed call,
 * configuration, the tenant model and its views, and the error catalogue; the HTTP server is the
 * `tenantry/server` subpath, Tenantry inside your own Fastify app `tenantry/fastify`.
 */

export type { ApiKeyView, CreatedKeyView, IssuedKeyView } from './auth/api-key-view.js';
export type { Principal } from './auth/delegation.js';
export type { PermissionSet } from './auth/permissions.js';
export { BUILT_IN_ROLES, MANAGEMENT_PERMISSIONS } from './auth/permissions.js';
export type { IsolationLevel, TenantryConfig } from './config/config-schema.js';
export type { LoadConfigOptions } from './config/load-config.js';
export { defineConfig, loadConfig, validateConfigFile } from './config/load-config.js';
export { DatabaseUnreachableError } from './db/connection-failure.js';
export type { Database, Queryable } from './db/database.js';
export { DataDirMissingError } from './engine/open-database.js';
export type { ErrorCode } from './errors.js';
export { ConfigError, errorCatalogue, isTenantryError, TenantryError } from './errors.js';
export type { TenantDb } from './isolation/tenant-db.js';
export type { StaticSyncReport } from './lifecycle/static-tenant-sync.js';
export type { TenantUsage } from './lifecycle/tenant-usage.js';
export type { TenantUsageView } from './lifecycle/tenant-usage-view.js';
export { catalogue } from './operations/catalogue.js';
export type {
  Access,
  HttpRoute,
  InputOf,
  Operation,
  OperationName,
  OutputOf,
} from './operations/operation.js';
export type { Resolution, TenantCredentials } from './resolve/tenant-resolver.js';
export type { ActionContext, Actor } from './runtime/actor.js';
export type { AuditEntryView } from './runtime/audit-view.js';
export type { EngineLogger } from './runtime/engine-logger.js';
export type { QuotaName } from './runtime/quota.js';
export { QuotaExceededError } from './runtime/quota.js';
export type { CacheOutcome, CacheStoreKind, ScopedCache, TenantCache } from './runtime/scoped-cache.js';
export type { StorageMeasurement } from './runtime/storage-meter.js';
export type {
  CallOptions,
  ConfigReloadReport,
  NounCalls,
  OpenTenantryOptions,
  OperationCalls,
} from './tenantry.js';
export { openTenantry, Tenantry } from './tenantry.js';
export { normalizeHost } from './tenants/host.js';
export { checkSlug } from './tenants/slug.js';
export type { Tenant, TenantConfig, TenantStatus } from './tenants/tenant.js';
export type { CreateTenantInput, ReplaceTenantInput, UpdateTenantInput } from './tenants/tenant-input.js';
export type { PublicTenantView, TenantConfigJson, TenantView } from './tenants/tenant-view.js';
export { publicTenantView, tenantView } from './tenants/tenant-view.js';
