import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { TenantryError } from '../errors.js';
import { countQuotaRefusal } from '../runtime/quota.js';
import type { TenantCache } from '../runtime/scoped-cache.js';
import { engineOf, type Tenantry } from '../tenantry.js';
import { problemFor, problemFromError, sendProblem } from './problem.js';
import { ProblemSchema } from './schemas.js';
import { type TenantScopeOptions, tenantScope } from './tenant-plugin.js';

export interface TenantryPluginOptions {
  readonly tenantry: Tenantry;
  /** Answer errors (and unknown routes) as problem+json with Tenantry's codes (default true). */
  readonly problemErrors?: boolean;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The engine this app serves. */
    tenantry: Tenantry;
    /**
     * Wraps routes in a tenant scope: each request is resolved (host, X-API-Key; all must agree)
     * before its handler runs, and `request.tenant` and `request.db` are bound to that tenant.
     */
    tenantScope(
      routes: (scope: FastifyInstance) => void | Promise<void>,
      options?: TenantScopeOptions,
    ): (scope: FastifyInstance) => Promise<void>;
  }
}

/**
 * Tenantry inside a team's own Fastify application: request decorators, tenant scopes and
 * problem+json errors. Shared infrastructure, so it is not encapsulated (fastify-plugin).
 *
 * @example
 * const app = Fastify();
 * await app.register(tenantryPlugin, { tenantry });
 * await app.register(app.tenantScope((scope) => {
 *   scope.get('/open-tasks', async (request) =>
 *     (await request.db.query('SELECT id, title FROM tasks WHERE NOT done')).rows);
 * }));
 */
export const tenantryPlugin = fp<TenantryPluginOptions>(
  async (app, options) => {
    const engine = engineOf(options.tenantry);
    app.decorate('tenantry', options.tenantry);
    app.decorate(
      'tenantScope',
      (routes: (scope: FastifyInstance) => void | Promise<void>, scopeOptions?: TenantScopeOptions) =>
        tenantScope(engine, routes, scopeOptions),
    );
    app.decorateRequest('tenant', null);
    app.decorateRequest('tenantResolution', null);
    app.decorateRequest('actor', null);
    app.decorateRequest('permissions', null);
    app.decorateRequest('tenantDb', null);
    app.decorateRequest('entityView', null);
    const tenantCaches = new WeakMap<FastifyRequest, TenantCache>();
    app.decorateRequest('cache', {
      getter(this: FastifyRequest) {
        if (!this.tenant) throw new TenantryError('tenant_required', 'this route has no tenant');
        let cache = tenantCaches.get(this);
        if (!cache) {
          cache = engine.cache.forTenant(this.tenant);
          tenantCaches.set(this, cache);
        }
        return cache;
      },
    });
    app.decorateRequest('db', {
      getter(this: FastifyRequest) {
        // Outside a tenant scope there is no tenant, so there is no database to give.
        if (!this.tenantDb) throw new TenantryError('tenant_required', 'this route has no tenant');
        return this.tenantDb;
      },
    });
    app.addSchema(ProblemSchema);
    // Every response counts, by tenant (bounded labels), route pattern and status.
    app.addHook('onResponse', (request, reply, done) => {
      engine.metrics.observeRequest(
        request.tenant?.slug,
        request.routeOptions.url ?? 'unmatched',
        request.method,
        reply.statusCode,
        reply.elapsedTime / 1000,
      );
      done();
    });
    // Quota refusals count by tenant wherever they surface (tenant and admin routes alike).
    app.addHook('onError', (_request, _reply, error, done) => {
      countQuotaRefusal(engine.metrics, error);
      done();
    });
    if (options.problemErrors !== false) {
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
    }
  },
  { name: 'tenantry', fastify: '5.x' },
);
