import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PermissionSet } from '../auth/permissions.js';
import type { Engine } from '../engine/engine.js';
import type { EntityView } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { Resolution, TenantCredentials } from '../resolve/tenant-resolver.js';
import { hostFromHeader } from '../tenants/host.js';
import { sessionsOf } from './session-cookie.js';
import { admitWithinLimits, resolveGuarded } from './tenant-limits-hook.js';

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(',') : value;
}

/** Every credential a request presents: its host, its API key, its session. */
export function credentialsOf(request: FastifyRequest): TenantCredentials {
  const { session, otherSession } = sessionsOf(request);
  // One object of one shape per request: the tenant hook reads it on every request.
  return {
    // Fastify's request.host already honours X-Forwarded-Host only when trustProxy is set.
    host: hostFromHeader(request.host),
    apiKey: headerValue(request, 'x-api-key'),
    session,
    otherSession,
  };
}

export interface TenantScopeOptions {
  /**
   * Serve requests whose tenant is known only from the host, without credentials (like
   * `/tenant-info`, which shows only public information). Default false: a route inside the
   * scope needs an authenticated actor, because a host name is not a secret.
   */
  readonly allowAnonymous?: boolean;
}

/**
 * Tenant scope: every route registered inside runs only after the request's tenant is resolved
 * and checked, and (unless `allowAnonymous`) its caller authenticated. It is an encapsulated
 * plugin on purpose: its hooks cannot leak onto admin routes, and a tenant route cannot be
 * registered outside it by accident.
 */
export function tenantScope(
  engine: Engine,
  routes: (scope: FastifyInstance) => void | Promise<void>,
  options: TenantScopeOptions = {},
) {
  return async function tenantScopePlugin(scope: FastifyInstance): Promise<void> {
    const admit = (
      request: FastifyRequest,
      reply: FastifyReply,
      resolution: Resolution,
      view: EntityView,
      permissions: PermissionSet,
    ): void => {
      request.tenant = resolution.tenant;
      request.tenantResolution = resolution;
      request.actor = resolution.session
        ? { kind: 'user', id: resolution.session.userId }
        : resolution.keyId
          ? { kind: 'api-key', id: resolution.keyId }
          : { kind: 'anonymous', id: 'host' };
      request.permissions = permissions;
      // Both loggers: Fastify writes the "request completed" line through the reply's.
      request.log = request.log.child({ tenantId: resolution.tenant.id, tenantSlug: resolution.tenant.slug });
      reply.log = request.log;
      if (request.actor.kind === 'anonymous' && !options.allowAnonymous) {
        throw new TenantryError(
          'unauthenticated',
          'this route needs credentials: send an X-API-Key or a session token',
        );
      }
      request.entityView = view;
      request.tenantDb = engine.data.forTenant(resolution.tenant);
    };
    // The slow path: resolution or the tenant's entity version not in memory yet.
    const admitLater = (
      request: FastifyRequest,
      reply: FastifyReply,
      resolving: Promise<Resolution>,
      done: (error?: Error) => void,
    ): void => {
      resolving
        .then(async (resolution) => {
          const [view, permissions] = await Promise.all([
            engine.schemas.loadView(resolution.tenant),
            engine.permissions.of(resolution),
          ]);
          admit(request, reply, resolution, view, permissions);
        })
        .then(
          () => admitWithinLimits(engine, request, reply, done),
          (error: Error) => done(error),
        );
    };
    // A callback hook, not an async one: in the steady state (everything cached) the request goes
    // on without a promise or a tick.
    scope.addHook('onRequest', (request, reply, done) => {
      const credentials = credentialsOf(request);
      let cached: Resolution | undefined;
      try {
        cached = engine.resolver.resolveCached(credentials);
        const view = cached && engine.schemas.view(cached.tenant);
        const permissions = cached && engine.permissions.cached(cached);
        if (cached && view && permissions) {
          admit(request, reply, cached, view, permissions);
          admitWithinLimits(engine, request, reply, done);
          return;
        }
      } catch (error) {
        done(error as Error);
        return;
      }
      admitLater(
        request,
        reply,
        cached ? Promise.resolve(cached) : resolveGuarded(engine, request, credentials),
        done,
      );
    });
    await routes(scope);
  };
}
