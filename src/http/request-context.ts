import type { FastifyRequest } from 'fastify';
import type { Resolution } from '../resolve/tenant-resolver.js';
import type { ActionContext, Actor } from '../runtime/actor.js';
import type { Tenant } from '../tenants/tenant.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The tenant of a tenant route; null outside tenant scope (set in the tenant plugin's hook). */
    tenant: Tenant | null;
    /** How the tenant was established; null outside tenant scope. */
    tenantResolution: Resolution | null;
    /** Who is calling; null until an authentication hook ran. */
    actor: Actor | null;
  }
}

export function actionContext(
  request: FastifyRequest,
  fallback: Actor = { kind: 'anonymous', id: 'anonymous' },
): ActionContext {
  return { actor: request.actor ?? fallback, clientAddress: request.ip, requestId: request.id };
}
