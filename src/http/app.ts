import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import type { AdminTokenGuard } from '../auth/admin-token.js';
import { TenantryError } from '../errors.js';
import type { Tenantry } from '../tenantry.js';
import { adminScope } from './admin-plugin.js';
import { adminRoutes } from './admin-routes.js';
import { adminSharedRoutes } from './admin-shared-routes.js';
import { entityRoutes } from './entity-routes.js';
import { healthRoutes } from './health-routes.js';
import { problemFor, problemFromError, sendProblem } from './problem.js';
import { ProblemSchema } from './schemas.js';
import { tenantScope } from './tenant-plugin.js';
import { tenantRoutes } from './tenant-routes.js';

export interface BuildAppOptions {
  readonly tenantry: Tenantry;
  readonly adminGuard: AdminTokenGuard;
  readonly logger?: FastifyServerOptions['logger'];
  /** Shared with the server: once `closing` is set, responses ask clients to drop the connection. */
  readonly lifecycle?: { closing: boolean };
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{8,128}$/;

/**
 * The HTTP face of Tenantry: health, admin and tenant routes, each scope in its own
 * encapsulated plugin, and every error answered as application/problem+json.
 */
export async function buildApp(options: BuildAppOptions): Promise<FastifyInstance> {
  const { tenantry } = options;
  const config = tenantry.config;
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: config.server.bodyLimitBytes,
    trustProxy: config.server.trustProxy,
    // A client may pass its own request id for correlation, but only a harmless one.
    genReqId: (raw) => {
      const given = raw.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  });

  // JSON only: a text/plain body would otherwise reach validation as a string.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('tenant', null);
  app.decorateRequest('tenantResolution', null);
  app.decorateRequest('actor', null);
  app.decorateRequest('tenantDb', null);
  app.decorateRequest('db', {
    getter(this: FastifyRequest) {
      if (!this.tenantDb)
        throw new TenantryError('tenant_required', 'this route has no tenant: no tenant database');
      return this.tenantDb;
    },
  });
  app.addSchema(ProblemSchema);

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cache-control', 'no-store');
  });

  // A keep-alive connection that finishes its request during shutdown would otherwise hold the
  // server open until its idle timeout.
  const lifecycle = options.lifecycle;
  if (lifecycle) {
    app.addHook('onSend', async (_request, reply) => {
      if (lifecycle.closing) reply.header('connection', 'close');
    });
  }

  app.setErrorHandler((error, request, reply) => {
    const { problem, unexpected } = problemFromError(error);
    if (unexpected) request.log.error({ err: error }, 'request failed');
    else request.log.info({ code: problem.code, status: problem.status }, problem.detail);
    return sendProblem(request, reply, problem);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      request,
      reply,
      problemFor('not_found', `no route ${request.method} ${request.url.split('?')[0]}`),
    ),
  );

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tenantry',
        version: '0.1.0',
        description: 'Multi-tenant backend: admin and tenant routes',
      },
      components: {
        securitySchemes: {
          adminToken: { type: 'http', scheme: 'bearer', description: 'The operator admin token' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
    },
  });

  await app.register(async (scope) => healthRoutes(tenantry)(scope));
  await app.register(
    adminScope(options.adminGuard, (scope) => {
      adminRoutes(tenantry)(scope);
      adminSharedRoutes(tenantry)(scope);
    }),
  );
  await app.register(
    tenantScope(tenantry, (scope) => {
      tenantRoutes(scope);
      entityRoutes(tenantry.config.entities)(scope);
    }),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.ready();
  return app;
}
