import { randomUUID } from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { AdminTokenGuard } from '../auth/admin-token.js';
import type { TrustProxy } from '../config/config-schema.js';
import { TenantryError } from '../errors.js';
import { engineOf, type Tenantry } from '../tenantry.js';
import { adminScope } from './admin-plugin.js';
import { adminRoutes } from './admin-routes.js';
import { adminSharedRoutes } from './admin-shared-routes.js';
import { authRoutes } from './auth-routes.js';
import { clientConnectionRoutes } from './client-routes.js';
import { entityRoutes } from './entity-routes.js';
import { healthRoutes } from './health-routes.js';
import { registerOpenApi, registerOpenApiDocs } from './openapi.js';
import {
  clientErrorProblem,
  frameworkErrorProblem,
  guardJsonBodies,
  hostHeaderCount,
} from './request-guards.js';
import { lazyChildLogger, withLazyRequestChildren } from './request-logger.js';
import { Security } from './schemas.js';
import { tenantOperationRoutes } from './tenant-operation-routes.js';
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
  const engine = engineOf(tenantry);
  const config = engine.config;
  const app = Fastify({
    // Request loggers become pino children only when a line is written (request-logger.ts).
    ...(options.loggerInstance
      ? { loggerInstance: withLazyRequestChildren(options.loggerInstance) }
      : options.logger
        ? { logger: options.logger, childLoggerFactory: lazyChildLogger }
        : { logger: false }),
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
    reply
      .header('x-request-id', request.id)
      .header('x-content-type-options', 'nosniff')
      .header('cache-control', 'no-store');
    if (hostHeaderCount(request.raw.rawHeaders) > 1) {
      done(new TenantryError('validation_failed', 'send one Host header', { field: 'host' }));
      return;
    }
    done();
  });

  await registerOpenApi(app);

  await app.register(async (scope) => healthRoutes(engine)(scope));
  const metricsRoute = (scope: FastifyInstance) => {
    const security = config.metrics.public ? Security.none : Security.admin;
    scope.get(
      '/metrics',
      {
        schema: {
          tags: ['operations'],
          security,
          summary: 'Prometheus metrics (admin token unless metrics.public)',
        },
      },
      async (_request, reply) => {
        reply.type(engine.metrics.contentType);
        return engine.metrics.text();
      },
    );
  };
  // Per-tenant traffic is business information: behind the admin token unless configured public.
  if (config.metrics.public) await app.register(async (scope) => metricsRoute(scope));
  await app.register(
    adminScope(
      options.adminGuard,
      (scope) => {
        adminRoutes(engine)(scope);
        adminSharedRoutes(engine)(scope);
        if (!config.metrics.public) metricsRoute(scope);
      },
      { sessions: engine.identity.sessions, adminToken: config.auth.adminToken },
    ),
  );
  // /tenant-info shows only what a tenant's own login page would: the host alone may ask.
  await app.register(tenantScope(engine, tenantRoutes, { allowAnonymous: true }));
  await app.register(tenantScope(engine, entityRoutes(engine)));
  await app.register(tenantScope(engine, tenantOperationRoutes(engine)));
  await app.register(async (scope) => authRoutes(engine)(scope));
  await app.register(async (scope) => clientConnectionRoutes(engine)(scope));
  await registerOpenApiDocs(app);

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
