import type { FastifyInstance } from 'fastify';
import type { AdminTokenGuard } from '../auth/admin-token.js';
import { TenantryError } from '../errors.js';

/** The bearer token, '' for a malformed Bearer header, undefined when there is none. */
function bearerToken(header: string | undefined): string | undefined {
  const match = header === undefined ? null : /^Bearer(?: +(.*))?$/i.exec(header.trim());
  if (!match) return undefined;
  const token = (match[1] ?? '').trim();
  return token.length === 0 ? undefined : /^\S+$/.test(token) ? token : '';
}

/**
 * Admin scope: every route inside needs the operator's admin token. Encapsulated like the tenant
 * scope; tenant credentials (keys, tenant hosts) never count here.
 */
export function adminScope(guard: AdminTokenGuard, routes: (scope: FastifyInstance) => void) {
  return async function adminScopePlugin(scope: FastifyInstance): Promise<void> {
    scope.addHook('onRequest', async (request) => {
      const token = bearerToken(request.headers.authorization);
      if (token === undefined)
        throw new TenantryError('unauthenticated', 'send the admin token as Authorization: Bearer');
      if (!guard.verify(token)) {
        request.log.warn({ event: 'admin_auth_failed' }, 'admin token refused');
        throw new TenantryError('invalid_credentials', 'the admin token is not valid');
      }
      request.actor = { kind: 'admin-token', id: 'admin' };
    });
    routes(scope);
  };
}
