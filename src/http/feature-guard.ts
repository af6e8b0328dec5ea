import type { FastifyReply, FastifyRequest } from 'fastify';
import { TenantryError } from '../errors.js';

/**
 * A preHandler for hand-written tenant routes that need a feature: 403 `feature_disabled` when
 * the request's tenant (its plan or its own list) lacks it.
 *
 * @example
 * scope.get('/reports', { preHandler: requireFeature('reports') }, async (request) => ...);
 */
export function requireFeature(feature: string) {
  return async function featureGuard(request: FastifyRequest, _reply: FastifyReply): Promise<void> {
    if (!request.tenant) throw new TenantryError('tenant_required', 'this route has no tenant');
    if (!request.tenant.hasFeature(feature)) {
      throw new TenantryError(
        'feature_disabled',
        `this needs the feature "${feature}", which this tenant does not have`,
      );
    }
  };
}
