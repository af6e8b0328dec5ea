import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { AdminTokenGuard } from '../auth/admin-token.js';
import type { TrustProxy } from '../config/config-schema.js';
import type { Tenantry } from '../tenantry.js';
import { adminFleetRoutes } from './admin-fleet-routes.js';
import { adminScope } from './admin-plugin.js';
import { adminRoutes } from './admin-routes.js';
import { adminSharedRoutes } from './admin-shared-routes.js';
import { authRoutes } from './auth-routes.js';
import { adminClientRoutes, clientConnectionRoutes, tenantClientRoutes } from './client-routes.js';
import { entityRoutes } from './entity-routes.js';
import { healthRoutes } from './health-routes.js';
import { identityRoutes } from './identity-routes.js';
import { clientErrorProblem, frameworkErrorProblem, guardJsonBodies } from './request-guards.js';
import { tenantScope } from './tenant-plugin.js';
import { tenantRoutes } from './tenant-routes.js';
import { tenantryPlugin } from './tenantry-plugin.js';

export interface BuildAppOptions {
  readonly tenantry: Tenantry;
  readonly adminGuard: AdminTokenGuard;
  readonly logger?: FastifyServerOptions['logger'];
  /** A pino logger to write through (instead of `logger` options). */
  readonly loggerInstance?: FastifyServerOptions['loggerInstance'];
  /** Registers more routes before the app is sealed (benchmarks, embedding). */
  readonly extend?: (app: FastifyInstance) => Promise<void>;
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
    ...(options.loggerInstance
      ? { loggerInstance: options.loggerInstance }
      : { logger: options.logger ?? false }),
    bodyLimit: config.server.bodyLimitBytes,
    trustProxy: fastifyTrustProxy(config.server.trustProxy),
    // A client may pass its own request id for correlation, but only a harmless one.
    genReqId: (raw) => {
      const given = raw.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    frameworkErrors: frameworkErrorProblem,
    clientErrorHandler: clientErrorProblem,
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  });

  // JSON only: a text/plain body would otherwise reach validation as a string.
  app.removeContentTypeParser('text/plain');
  guardJsonBodies(app);
  await app.register(tenantryPlugin, { tenantry });

  // Callback hooks on the hot path: no promise per request.
  app.addHook('onRequest', (request, reply, done) => {
    reply.headers({
      'x-request-id': request.id,
      'x-content-type-options': 'nosniff',
      'cache-control': 'no-store',
    });
    done();
  });

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
  const metricsRoute = (scope: FastifyInstance) => {
    scope.get(
      '/metrics',
      { schema: { tags: ['operations'], summary: 'Prometheus metrics (admin token unless metrics.public)' } },
      async (_request, reply) => {
        reply.type(tenantry.metrics.contentType);
        return tenantry.metrics.text();
      },
    );
  };
  // Per-tenant traffic is business information: behind the admin token unless configured public.
  if (tenantry.config.metrics.public) await app.register(async (scope) => metricsRoute(scope));
  await app.register(
    adminScope(
      options.adminGuard,
      (scope) => {
        adminRoutes(tenantry)(scope);
        adminFleetRoutes(tenantry)(scope);
        adminSharedRoutes(tenantry)(scope);
        adminClientRoutes(tenantry)(scope);
        if (!tenantry.config.metrics.public) metricsRoute(scope);
      },
      { sessions: tenantry.identity.sessions, adminToken: tenantry.config.auth.adminToken },
    ),
  );
  // /tenant-info shows only what a tenant's own login page would: the host alone may ask.
  await app.register(tenantScope(tenantry, tenantRoutes, { allowAnonymous: true }));
  await app.register(tenantScope(tenantry, entityRoutes(tenantry)));
  await app.register(tenantScope(tenantry, identityRoutes(tenantry)));
  await app.register(tenantScope(tenantry, tenantClientRoutes(tenantry)));
  await app.register(async (scope) => authRoutes(tenantry)(scope));
  await app.register(async (scope) => clientConnectionRoutes(tenantry)(scope));
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
  // The interactive docs page serves its own bundled assets: no CDN, works offline.
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });

  await options.extend?.(app);
  await app.ready();
  return app;
}

/** `server.trustProxy` as Fastify takes it: a number of hops becomes the function proxy-addr would make of it. */
function fastifyTrustProxy(
  trust: TrustProxy,
): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (typeof trust === 'number') return (_address, hop) => hop < trust;
  return typeof trust === 'boolean' ? trust : [...trust];
}
