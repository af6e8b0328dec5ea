import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Principal } from '../auth/delegation.js';
import type { Engine } from '../engine/engine.js';
import { TenantryError } from '../errors.js';
import { catalogue } from '../operations/catalogue.js';
import { recordAudit } from '../runtime/audit-log.js';
import { registerOperationRoutes } from './operation-routes.js';
import { actionContext } from './request-context.js';

/** The acting principal of a tenant request: what it holds bounds what it may grant. */
export function principalOf(engine: Engine, request: FastifyRequest): Principal {
  return engine.identity.actor(
    request.tenant!.id,
    request.permissions!,
    actionContext(request),
    request.tenantResolution?.session?.userId,
    request.tenantResolution?.keyScope?.createdBy ?? undefined,
  );
}

/**
 * Every refused management request (forbidden, or an id that is not in the tenant) is audited:
 * a user probing other tenants' ids or trying to raise itself leaves a trail.
 */
function auditRefusals(engine: Engine, app: FastifyInstance): void {
  app.addHook('onError', async (request, _reply, error) => {
    if (!(error instanceof TenantryError) || !request.tenant) return;
    if (error.code !== 'forbidden' && error.code !== 'not_found') return;
    await recordAudit(engine.db.owner, actionContext(request), {
      action: 'access.denied',
      outcome: 'denied',
      tenantId: request.tenant.id,
      target: `${request.method} ${request.routeOptions.url ?? request.url}`,
      details: { code: error.code, id: (request.params as { id?: string } | undefined)?.id },
    }).catch((failure: unknown) => request.log.warn({ err: failure }, 'audit of a refusal failed'));
  });
}

/**
 * A tenant's own management routes (`/api/v1/users|roles|groups|keys|clients`), from the
 * catalogue. Registered inside the tenant scope: the caller acts in the request's tenant only,
 * with what it holds.
 */
export function tenantOperationRoutes(engine: Engine) {
  return (app: FastifyInstance): void => {
    auditRefusals(engine, app);
    registerOperationRoutes(app, engine, catalogue, 'tenant', (request) => ({
      kind: 'tenant',
      principal: principalOf(engine, request),
      tenant: request.tenant!,
    }));
  };
}
