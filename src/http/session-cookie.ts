import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** The cookie a browser keeps its session in: host-only (no Domain), HttpOnly, SameSite=Lax. */
export const SESSION_COOKIE = 'tenantry_session';

/**
 * The session token of a request: `Authorization: Bearer <token>` first, else the session cookie.
 * Another scheme (`Basic`, a proxy's) is not ours and is ignored; a malformed `Bearer` header is
 * taken whole, so it is refused rather than silently replaced by the cookie. The cookie is parsed
 * only when one of ours is there (no parsing cost for API clients).
 */
export function sessionTokenOf(request: FastifyRequest): string | undefined {
  return bearerTokenOf(request) ?? sessionCookieOf(request);
}

/**
 * The sessions a request presents, each header read once (the tenant hook runs this on every
 * request): `session` as `sessionTokenOf` gives it, and `otherSession`, the session cookie when a
 * different Bearer token is sent too: a second credential, which must not name another tenant.
 */
export function sessionsOf(request: FastifyRequest): { session?: string; otherSession?: string } {
  const bearer = bearerTokenOf(request);
  const cookie = sessionCookieOf(request);
  if (bearer === undefined) return cookie === undefined ? NO_SESSIONS : { session: cookie };
  return cookie !== undefined && cookie !== bearer
    ? { session: bearer, otherSession: cookie }
    : { session: bearer };
}

const NO_SESSIONS: { session?: string; otherSession?: string } = Object.freeze({});

function bearerTokenOf(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization;
  if (authorization === undefined || !/^Bearer(\s|$)/i.test(authorization)) return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(authorization);
  return match ? match[1] : authorization;
}

function sessionCookieOf(request: FastifyRequest): string | undefined {
  const cookie = request.headers.cookie;
  if (cookie === undefined || !cookie.includes(`${SESSION_COOKIE}=`)) return undefined;
  return parseCookie(cookie)[SESSION_COOKIE];
}

export function setSessionCookie(
  reply: FastifyReply,
  token: string,
  maxAgeSeconds: number,
  secure: boolean,
): void {
  reply.header(
    'set-cookie',
    stringifySetCookie({
      name: SESSION_COOKIE,
      value: token,
      httpOnly: true,
      secure,
      sameSite: 'lax',
      path: '/',
      maxAge: maxAgeSeconds,
    }),
  );
}

export function clearSessionCookie(reply: FastifyReply, secure: boolean): void {
  reply.header(
    'set-cookie',
    stringifySetCookie({
      name: SESSION_COOKIE,
      value: '',
      httpOnly: true,
      secure,
      sameSite: 'lax',
      path: '/',
      maxAge: 0,
    }),
  );
}
