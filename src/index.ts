/**
 * Tenantry's library entry. The engine (`openTenantry`), configuration, the tenant model and the
 * error catalogue; the HTTP server is the `tenantry/server` subpath.
 */
export { openTenantry, Tenantry } from './tenantry.js';
export type { OpenTenantryOptions } from './tenantry.js';
export { loadConfig, defineConfig, validateConfigFile } from './config/load-config.js';
export type { LoadConfigOptions } from './config/load-config.js';
export type { TenantryConfig, IsolationLevel } from './config/config-schema.js';
export { ConfigError, TenantryError, errorCatalogue, isTenantryError } from './errors.js';
export type { ErrorCode } from './errors.js';
export { publicTenantView } from './tenants/tenant.js';
export type { Tenant, TenantConfig, TenantStatus, PublicTenantView } from './tenants/tenant.js';
export type { CreatedTenant, ListTenantsOptions, TenantPage } from './tenants/tenant-registry.js';
export type { CreateTenantInput, UpdateTenantInput, ReplaceTenantInput } from './tenants/tenant-input.js';
export { checkSlug } from './tenants/slug.js';
export { normalizeHost } from './tenants/host.js';
export type { Resolution, TenantCredentials } from './resolve/tenant-resolver.js';
export type { ApiKeyInfo, IssuedApiKey } from './auth/api-key-store.js';
export type { Actor, ActionContext } from './runtime/actor.js';
export type { AuditEntry, AuditFilter, AuditPage } from './runtime/audit-log.js';
export type { Database, Queryable } from './db/database.js';
