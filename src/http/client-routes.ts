import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { TenantAgreement } from '../auth/client-registry.js';
import { ClientInventorySchema } from '../auth/client-view.js';
import type { Engine } from '../engine/engine.js';
import { TenantryError } from '../errors.js';
import { recordCrossTenant } from '../resolve/cross-tenant-audit.js';
import { hostFromHeader } from '../tenants/host.js';
import { actionContext } from './request-context.js';
import { problemResponses, Security } from './schemas.js';

const Short = (max: number) => Type.String({ minLength: 1, maxLength: max });

const ConnectBody = Type.Object(
  {
    clientId: Short(100),
    clientSecret: Short(200),
    inventory: ClientInventorySchema,
  },
  { additionalProperties: false },
);

/**
 * The tenant the request's Host names, when it names one: as on tenant routes, every credential
 * present must agree, so a client of tenant A sent to tenant B's host is refused (403
 * `cross_tenant`, audited under both) before anything is written.
 */
function hostAgreement(engine: Engine, request: FastifyRequest): TenantAgreement {
  return async (tenantId, client) => {
    const host = hostFromHeader(request.host);
    if (host === undefined) return;
    let named: string;
    try {
      named = (await engine.resolver.resolve({ host }, actionContext(request))).tenant.id;
    } catch (error) {
      // The service's own host names no tenant.
      if (error instanceof TenantryError && error.code === 'tenant_required') return;
      throw error;
    }
    if (named === tenantId) return;
    const claims = [
      { source: 'host', tenantId: named },
      ...(tenantId ? [{ source: 'client', tenantId }] : []),
    ];
    await recordCrossTenant(
      engine.db.owner,
      { ...actionContext(request), actor: client },
      claims,
      client.id,
    ).catch((failure: unknown) =>
      request.log.warn({ err: failure }, 'audit of a cross-tenant client failed'),
    );
    throw new TenantryError('cross_tenant', 'the client belongs to another tenant than the host names');
  };
}

function bearer(request: FastifyRequest): string {
  const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
  if (!match)
    throw new TenantryError('unauthenticated', 'send the connection token as Authorization: Bearer');
  return match[1]!;
}

/** `/clients/connect` and `/clients/heartbeat`: machines, outside any tenant scope. */
export function clientConnectionRoutes(engine: Engine) {
  return (app: FastifyInstance): void => {
    const clients = engine.identity.clients;
    app.post(
      '/clients/connect',
      {
        schema: {
          tags: ['clients'],
          security: Security.none,
          summary: 'A machine connects with its credentials and inventory; it is mapped to its tenant',
          body: ConnectBody,
          response: { ...problemResponses },
        },
      },
      async (request) => {
        // A wrong secret costs a slow hash: the address that keeps failing is refused first.
        const attempt = await engine.keyFailures.begin(request.ip);
        if (attempt.waitMs > 0) {
          throw new TenantryError('rate_limited', 'too many failed credential checks from this address', {
            retryAfterSeconds: Math.ceil(attempt.waitMs / 1000),
          });
        }
        const body = request.body as { clientId: string; clientSecret: string; inventory: object };
        try {
          const connected = await clients.connect(
            body,
            actionContext(request),
            hostAgreement(engine, request),
          );
          await attempt.end(false);
          return connected;
        } catch (error) {
          await attempt.end(error instanceof TenantryError && error.code === 'invalid_credentials');
          throw error;
        }
      },
    );
    app.post(
      '/clients/heartbeat',
      {
        schema: {
          tags: ['clients'],
          security: Security.client,
          summary: 'A connected machine says it is alive (Authorization: Bearer <connection token>)',
          body: Type.Object(
            { inventory: Type.Optional(ClientInventorySchema) },
            { additionalProperties: false },
          ),
          response: { ...problemResponses },
        },
        // The inventory is optional: a heartbeat without a body is an empty one.
        preValidation: (request, _reply, done) => {
          request.body ??= {};
          done();
        },
      },
      async (request) => {
        const body = request.body as { inventory?: object };
        return clients.heartbeat(
          bearer(request),
          body.inventory,
          actionContext(request),
          hostAgreement(engine, request),
        );
      },
    );
  };
}
