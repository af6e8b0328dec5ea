import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { requirePermission } from '../auth/delegation.js';
import { TenantryError } from '../errors.js';
import type { Tenantry } from '../tenantry.js';
import { auditRefusals, principalOf } from './identity-routes.js';
import { actionContext } from './request-context.js';
import { problemResponses } from './schemas.js';

const Short = (max: number) => Type.String({ minLength: 1, maxLength: max });

/** What a client may say about itself: bounded, so a client cannot store megabytes per heartbeat. */
export const InventorySchema = Type.Object(
  {
    name: Type.Optional(Short(200)),
    hostname: Type.Optional(Short(253)),
    os: Type.Optional(Short(100)),
    osVersion: Type.Optional(Short(100)),
    architecture: Type.Optional(Short(50)),
    ipv4: Type.Optional(Type.Array(Type.String({ format: 'ipv4' }), { maxItems: 64 })),
    ipv6: Type.Optional(Type.Array(Type.String({ format: 'ipv6' }), { maxItems: 64 })),
    tags: Type.Optional(Type.Array(Short(100), { maxItems: 100 })),
    version: Type.Optional(Short(100)),
  },
  { additionalProperties: false },
);

const ConnectBody = Type.Object(
  {
    clientId: Short(100),
    clientSecret: Short(200),
    inventory: InventorySchema,
  },
  { additionalProperties: false },
);

function bearer(request: FastifyRequest): string {
  const match = /^Bearer\s+(\S+)$/i.exec(request.headers.authorization ?? '');
  if (!match)
    throw new TenantryError('unauthenticated', 'send the connection token as Authorization: Bearer');
  return match[1]!;
}

/** `/clients/connect` and `/clients/heartbeat`: machines, outside any tenant scope. */
export function clientConnectionRoutes(tenantry: Tenantry) {
  return (app: FastifyInstance): void => {
    const clients = tenantry.identity.clients;
    app.post(
      '/clients/connect',
      {
        schema: {
          tags: ['clients'],
          summary: 'A machine connects with its credentials and inventory; it is mapped to its tenant',
          body: ConnectBody,
          response: { ...problemResponses },
        },
      },
      async (request) => {
        // A wrong secret costs a slow hash: the address that keeps failing is refused first.
        const attempt = await tenantry.keyFailures.begin(request.ip);
        if (attempt.waitMs > 0) {
          throw new TenantryError('rate_limited', 'too many failed credential checks from this address', {
            retryAfterSeconds: Math.ceil(attempt.waitMs / 1000),
          });
        }
        const body = request.body as { clientId: string; clientSecret: string; inventory: object };
        try {
          const connected = await clients.connect(body, actionContext(request));
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
          summary: 'A connected machine says it is alive (Authorization: Bearer <connection token>)',
          body: Type.Optional(
            Type.Object({ inventory: Type.Optional(InventorySchema) }, { additionalProperties: false }),
          ),
          response: { ...problemResponses },
        },
      },
      async (request) => {
        const body = (request.body ?? {}) as { inventory?: object };
        return clients.heartbeat(bearer(request), body.inventory, actionContext(request));
      },
    );
  };
}

/** `/api/v1/clients`: a tenant's machines. Registered inside the tenant scope. */
export function tenantClientRoutes(tenantry: Tenantry) {
  return (app: FastifyInstance): void => {
    auditRefusals(tenantry, app);
    const clients = tenantry.identity.clients;
    app.get(
      '/api/v1/clients',
      { schema: { tags: ['clients'], summary: 'This tenant’s clients (clients:read)' } },
      async (request) => {
        const principal = principalOf(tenantry, request);
        requirePermission(principal, 'clients:read');
        return { items: await clients.list(principal.tenantId) };
      },
    );
    app.post(
      '/api/v1/clients',
      {
        schema: {
          tags: ['clients'],
          summary: 'New client credentials (clients:manage); the secret is shown once',
          body: Type.Object({ name: Short(200) }, { additionalProperties: false }),
        },
      },
      async (request, reply) => {
        const issued = await clients.create(principalOf(tenantry, request), request.body as { name: string });
        reply.code(201);
        return issued;
      },
    );
    app.delete(
      '/api/v1/clients/:id',
      {
        schema: {
          tags: ['clients'],
          summary: 'Revoke a client (clients:manage)',
          params: Type.Object({ id: Short(100) }, { additionalProperties: false }),
          response: { 204: Type.Null(), ...problemResponses },
        },
      },
      async (request, reply) => {
        await clients.revoke(principalOf(tenantry, request), (request.params as { id: string }).id);
        reply.code(204).send();
      },
    );
  };
}

/** `/admin/clients`: every client with its tenant, or the orphaned ones. Inside the admin scope. */
export function adminClientRoutes(tenantry: Tenantry) {
  return (app: FastifyInstance): void => {
    const clients = tenantry.identity.clients;
    app.get(
      '/admin/clients',
      {
        schema: {
          tags: ['admin'],
          summary: 'Every client with its tenant; ?orphaned=true for those without one',
          querystring: Type.Object(
            { orphaned: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])) },
            { additionalProperties: false },
          ),
        },
      },
      async (request) => ({
        items: await clients.listAll({
          orphaned: (request.query as { orphaned?: string }).orphaned === 'true',
        }),
      }),
    );
    app.post(
      '/admin/clients',
      {
        schema: {
          tags: ['admin'],
          summary: 'New client credentials for a tenant (or none); the secret is shown once',
          body: Type.Object(
            { name: Short(200), tenant: Type.Optional(Short(100)) },
            { additionalProperties: false },
          ),
        },
      },
      async (request, reply) => {
        const body = request.body as { name: string; tenant?: string };
        const tenantId = body.tenant === undefined ? null : (await tenantry.tenants.get(body.tenant)).id;
        const issued = await clients.createForOperator(tenantId, { name: body.name }, actionContext(request));
        reply.code(201);
        return issued;
      },
    );
  };
}
