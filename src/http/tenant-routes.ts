import type { FastifyInstance, FastifyRequest } from 'fastify';
import { publicTenantView } from '../tenants/tenant.js';
import { ProblemSchema, PublicTenantSchema } from './schemas.js';

/** Routes of the resolved tenant itself. Registered inside `tenantScope`. */
export function tenantRoutes(scope: FastifyInstance): void {
  const schema = {
    tags: ['tenant'],
    summary: 'The tenant this request resolved to',
    security: [{ apiKey: [] }, {}] as Record<string, string[]>[],
    response: { 200: PublicTenantSchema, 401: ProblemSchema, 403: ProblemSchema, 404: ProblemSchema },
  };
  // The tenant hook has run: a request without a resolved tenant never reaches a handler here.
  const handler = async (request: FastifyRequest) => publicTenantView(request.tenant!);
  scope.get('/tenant-info', { schema }, handler);
  scope.get('/tenants/current', { schema }, handler);
}
