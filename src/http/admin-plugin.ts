import type { FastifyInstance } from 'fastify';
import type { AdminTokenGuard } from '../auth/admin-token.js';
import type { SessionStore } from '../auth/session-store.js';
import { isSessionTokenShaped } from '../auth/session-token.js';
import { TenantryError } from '../errors.js';

export interface AdminScopeOptions {
  /** Global admin users' sessions open the admin routes too. */
  readonly sessions?: SessionStore;
  /** Whether the admin token is accepted (`auth.adminToken`); default true. */
  readonly adminToken?: boolean;
}

/** The bearer token, '' for a malformed Bearer header, undefined when there is none. */
function bearerToken(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer(?: +(.*))?$/i.exec(header.trim());
  if (!match) return undefined;
  const token = (match[1] ?? '').trim();
  return token.length === 0 ? undefined : /^\S+$/.test(token) ? token : '';
}

/**
 * Admin scope: every route inside needs the operator's admin token or the session of a global
 * admin user, as `Authorization: Bearer` (never a cookie: no cross-site request can carry it).
 * Encapsulated like the tenant scope; tenant credentials (keys, tenant hosts, tenant users'
 * sessions) never count here.
 */
export function adminScope(
  guard: AdminTokenGuard,
  routes: (scope: FastifyInstance) => void,
  options: AdminScopeOptions = {},
) {
  return async function adminScopePlugin(scope: FastifyInstance): Promise<void> {
    scope.addHook('onRequest', async (request) => {
      const token = bearerToken(request.headers.authorization);
      if (token === undefined)
        throw new TenantryError('unauthenticated', 'send the admin token as Authorization: Bearer');
      if (options.sessions && isSessionTokenShaped(token)) {
        const session = await options.sessions.verify(token);
        if (!session?.globalAdmin) {
          request.log.warn({ event: 'admin_auth_failed' }, 'session refused on an admin route');
          throw new TenantryError('forbidden', 'admin routes need a global admin');
        }
        request.actor = { kind: 'user', id: session.userId };
        return;
      }
      if (options.adminToken === false) {
        throw new TenantryError(
          'invalid_credentials',
          'the admin token is disabled: log in as a global admin',
        );
      }
      if (!guard.verify(token)) {
        request.log.warn({ event: 'admin_auth_failed' }, 'admin token refused');
        throw new TenantryError('invalid_credentials', 'the admin token is not valid');
      }
      request.actor = { kind: 'admin-token', id: 'admin' };
    });
    routes(scope);
  };
}
