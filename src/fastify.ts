/** `tenantry/fastify`: Tenantry inside your own Fastify application. */

export { requireFeature } from './http/feature-guard.js';
export type { Problem } from './http/problem.js';
export { problemFor, problemFromError } from './http/problem.js';
export {} from './http/request-context.js';
export { lazyChildLogger, withLazyRequestChildren } from './http/request-logger.js';
export type { TenantScopeOptions } from './http/tenant-plugin.js';
export { tenantScope } from './http/tenant-plugin.js';
export type { TenantryPluginOptions } from './http/tenantry-plugin.js';
export { tenantryPlugin } from './http/tenantry-plugin.js';
export type { TenantDb } from './isolation/tenant-db.js';
