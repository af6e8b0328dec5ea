/**
 * How the hand-written peers of the hot-path benchmark authenticate: every API key's SHA-256
 * digest in a `Map`, filled at start from BENCH_KEYS (a JSON array of `{ key, tenant }`), so a
 * request costs one digest and one lookup, as a cached key does in Tenantry. The peers also send
 * Tenantry's response headers, so the comparison is of the work, not of the bytes on the wire.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { FastifyReply } from 'fastify';

export interface PeerTenant {
  readonly id: string;
  readonly [field: string]: unknown;
}

export interface PeerKey {
  readonly key: string;
  readonly tenant: PeerTenant;
}

const digest = (key: string) => createHash('sha256').update(key).digest('base64url');

export function peerKeys(json = process.env.BENCH_KEYS ?? '[]'): (key: unknown) => PeerTenant | undefined {
  const byDigest = new Map<string, PeerTenant>();
  for (const { key, tenant } of JSON.parse(json) as PeerKey[]) byDigest.set(digest(key), tenant);
  return (key) => (typeof key === 'string' ? byDigest.get(digest(key)) : undefined);
}

/** The headers Tenantry sends on every tenant response (request id, no sniffing, no caching). */
export function tenantHeaders(reply: FastifyReply): FastifyReply {
  return reply.headers({
    'x-request-id': randomUUID(),
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  });
}

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
