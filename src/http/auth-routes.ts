import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { Engine } from '../engine/engine.js';
import { TenantryError } from '../errors.js';
import { hostFromHeader } from '../tenants/host.js';
import { publicTenantView } from '../tenants/tenant-view.js';
import { actionContext } from './request-context.js';
import { problemResponses, Security } from './schemas.js';
import { clearSessionCookie, SESSION_COOKIE, sessionTokenOf, setSessionCookie } from './session-cookie.js';
import { resolveGuarded } from './tenant-limits-hook.js';
import { credentialsOf } from './tenant-plugin.js';

const tags = ['auth'];
const Credentials = Type.Object(
  {
    email: Type.String({ minLength: 1, maxLength: 254 }),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

/**
 * The tenant a login request names by itself (its host, its API key), or undefined when it names
 * none (the service's own host): then the tenant follows from the user.
 */
async function requestTenant(engine: Engine, request: FastifyRequest): Promise<string | undefined> {
  const apiKey = request.headers['x-api-key'];
  const credentials = {
    host: hostFromHeader(request.host),
    apiKey: typeof apiKey === 'string' ? apiKey : undefined,
  };
  try {
    return (await resolveGuarded(engine, request, credentials)).tenant.id;
  } catch (error) {
    if (error instanceof TenantryError && error.code === 'tenant_required') return undefined;
    throw error;
  }
}

/**
 * `/auth/login`, `/auth/logout`, `/auth/me` and `/auth/setup`. Outside the tenant scope: a global
 * admin has no tenant, and a tenant user may log in from the service's own host.
 */
export function authRoutes(engine: Engine) {
  return (app: FastifyInstance): void => {
    const secure = engine.config.auth.secureCookie;
    loginRoute(app, engine, secure);
    logoutRoute(app, engine, secure);
    meRoute(app, engine);
    setupRoute(app, engine);
  };
}

function loginRoute(app: FastifyInstance, engine: Engine, secure: boolean): void {
  app.post(
    '/auth/login',
    {
      schema: {
        tags,
        security: Security.none,
        summary: 'Log in with email and password: a session token (also set as an HttpOnly cookie)',
        body: Credentials,
        response: {
          200: Type.Object({
            token: Type.String(),
            expiresAt: Type.String({ format: 'date-time' }),
            user: Type.Object({
              id: Type.String(),
              tenantId: Type.Union([Type.String(), Type.Null()]),
              globalAdmin: Type.Boolean(),
            }),
          }),
          ...problemResponses,
        },
      },
    },
    async (request, reply) => {
      const requestTenantId = await requestTenant(engine, request);
      const body = request.body as { email: string; password: string };
      const issued = await engine.identity.login.login(
        {
          email: body.email,
          password: body.password,
          requestTenantId,
          userAgent: request.headers['user-agent'],
        },
        actionContext(request),
      );
      setSessionCookie(reply, issued.token, engine.identity.sessions.ttlSeconds, secure);
      return {
        token: issued.token,
        expiresAt: issued.session.expiresAt.toISOString(),
        user: {
          id: issued.session.userId,
          tenantId: issued.session.tenantId,
          globalAdmin: issued.session.globalAdmin,
        },
      };
    },
  );
}

function logoutRoute(app: FastifyInstance, engine: Engine, secure: boolean): void {
  app.post(
    '/auth/logout',
    {
      schema: {
        tags,
        security: Security.session,
        summary: 'End this session',
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      const token = sessionTokenOf(request);
      const session = token === undefined ? undefined : await engine.identity.sessions.verify(token);
      if (session)
        await engine.identity.logout(session, actionContext(request, { kind: 'user', id: session.userId }));
      if (request.headers.cookie?.includes(`${SESSION_COOKIE}=`)) clearSessionCookie(reply, secure);
      reply.code(204).send();
    },
  );
}

function meRoute(app: FastifyInstance, engine: Engine): void {
  app.get(
    '/auth/me',
    {
      schema: {
        tags,
        security: Security.session,
        summary: 'The user of this session, its tenant and permissions',
      },
    },
    async (request) => {
      const token = sessionTokenOf(request);
      const session = token === undefined ? undefined : await engine.identity.sessions.verify(token);
      if (!session) throw new TenantryError('unauthenticated', 'log in first: no valid session');
      // As on tenant routes, every credential present must name the session's tenant: a
      // tenant's host or key beside another tenant's session is 403 cross_tenant, audited.
      if (session.tenantId !== null) await resolveGuarded(engine, request, credentialsOf(request));
      const user = await engine.identity.users.find(session.userId);
      if (!user) throw new TenantryError('unauthenticated', 'log in first: no valid session');
      const tenant =
        session.tenantId === null ? undefined : await engine.resolver.tenantById(session.tenantId);
      const permissions =
        session.tenantId === null
          ? []
          : [...(await engine.identity.access.userPermissions(session.tenantId, session.userId))].sort();
      return {
        user,
        tenant: tenant ? publicTenantView(tenant) : null,
        permissions,
        session: { id: session.id, expiresAt: session.expiresAt.toISOString() },
      };
    },
  );
}

function setupRoute(app: FastifyInstance, engine: Engine): void {
  app.post(
    '/auth/setup',
    {
      schema: {
        tags,
        security: Security.none,
        summary: 'Set a password with a one-time set-up token',
        body: Type.Object(
          {
            token: Type.String({ minLength: 1, maxLength: 200 }),
            password: Type.String({ minLength: 1, maxLength: 1024 }),
          },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as { token: string; password: string };
      await engine.identity.users.completeSetup(body.token, body.password, actionContext(request));
      reply.code(204).send();
    },
  );
}
