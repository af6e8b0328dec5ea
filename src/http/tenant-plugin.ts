import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Tenantry } from '../tenantry.js';
import { hostFromHeader } from '../tenants/host.js';
import { actionContext } from './request-context.js';

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

/**
 * Tenant scope: every route registered inside runs only after the request's tenant is resolved
 * and checked. It is an encapsulated plugin on purpose: its hook cannot leak onto admin routes,
 * and a tenant route cannot be registered outside it by accident.
 */
export function tenantScope(tenantry: Tenantry, routes: (scope: FastifyInstance) => void | Promise<void>) {
  return async function tenantScopePlugin(scope: FastifyInstance): Promise<void> {
    scope.addHook('onRequest', async (request) => {
      // Fastify's request.host already honours X-Forwarded-Host only when trustProxy is set.
      const host = hostFromHeader(request.host);
      const apiKey = headerValue(request, 'x-api-key');
      const resolution = await tenantry.resolver.resolve({ host, apiKey }, actionContext(request));
      request.tenant = resolution.tenant;
      request.tenantResolution = resolution;
      request.actor = resolution.keyId
        ? { kind: 'api-key', id: resolution.keyId }
        : { kind: 'anonymous', id: 'host' };
      request.log = request.log.child({ tenantId: resolution.tenant.id, tenantSlug: resolution.tenant.slug });
      request.tenantDb = tenantry.data.forTenant(resolution.tenant);
    });
    await routes(scope);
  };
}
