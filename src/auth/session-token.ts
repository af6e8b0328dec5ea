import { hash, randomBytes } from 'node:crypto';

/** `tns_` marks a Tenantry session token for secret scanners, as `tny_` marks API keys. */
export const SESSION_TOKEN_PREFIX = 'tns_';
const TOKEN_PATTERN = /^tns_[A-Za-z0-9_-]{43}$/;

/**
 * A new opaque token (256 random bits). Shown to its holder once; stored only as its SHA-256:
 * with that much entropy a fast hash is enough, and it keeps the lookup a single index probe.
 */
export function generateSessionToken(): { token: string; hash: Buffer } {
  const token = `${SESSION_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashSessionToken(token) };
}

export function isSessionTokenShaped(presented: string): boolean {
  return TOKEN_PATTERN.test(presented);
}

export function hashSessionToken(token: string): Buffer {
  return hash('sha256', token, 'buffer');
}

/** The same SHA-256 as base64url text, the in-process cache's key: no Buffer made on the hot path. */
export function sessionCacheKey(token: string): string {
  return hash('sha256', token, 'base64url');
}
