import type { FastifyRequest } from 'fastify';
import type { PermissionSet } from '../auth/permissions.js';
import type { EntityView } from '../entities/entity-versions.js';
import type { TenantDb } from '../isolation/tenant-db.js';
import type { Resolution } from '../resolve/tenant-resolver.js';
import type { ActionContext, Actor } from '../runtime/actor.js';
import type { TenantCache } from '../runtime/scoped-cache.js';
import type { Tenant } from '../tenants/tenant.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of a tenant route; null outside tenant scope (set in the tenant plugin's hook). */
    tenant: Tenant | null;
    /** How the tenant was established; null outside tenant scope. */
    tenantResolution: Resolution | null;
    /** Who is calling; null until an authentication hook ran. */
    actor: Actor | null;
    /** What the caller may do in the request's tenant; null outside tenant scope. */
    permissions: PermissionSet | null;
    /**
     * The database bound to the request's tenant. Reading it outside a tenant route throws
     * (tenant_required): a query can never run without a tenant.
     */
    readonly db: TenantDb;
    /** @internal set by the tenant hook; read `db`. */
    tenantDb: TenantDb | null;
    /**
     * The request tenant's cache: keys and values of this tenant only. Reading it outside a tenant
     * route throws (tenant_required).
     */
    readonly cache: TenantCache;
    /** The declared entities as the tenant's tables can serve them (its entity-schema version). */
    entityView: EntityView | null;
  }
}

export function actionContext(
  request: FastifyRequest,
  fallback: Actor = { kind: 'anonymous', id: 'anonymous' },
): ActionContext {
  return { actor: request.actor ?? fallback, clientAddress: request.ip, requestId: request.id };
}
