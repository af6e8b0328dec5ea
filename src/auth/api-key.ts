import { hash, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** `tny_` marks the string as a Tenantry key for secret scanners; then a public id and the secret. */
export const API_KEY_PREFIX = 'tny_';
const KEY_ID_BYTES = 8; // 16 hex characters, the indexed lookup column
const SECRET_BYTES = 32; // 256 random bits
const SALT_BYTES = 16;
const HASH_BYTES = 32;
export interface ParsedApiKey {
  readonly keyId: string;
  readonly secret: string;
}

export interface GeneratedApiKey extends ParsedApiKey {
  /** The whole key as the client sends it. Shown once, never stored. */
  readonly plaintext: string;
}

export interface StoredKeyHash {
  readonly salt: Buffer;
  readonly hash: Buffer;
  readonly iterations: number;
}

export function generateApiKey(): GeneratedApiKey {
  const keyId = randomBytes(KEY_ID_BYTES).toString('hex');
  const secret = randomBytes(SECRET_BYTES).toString('base64url');
  return { keyId, secret, plaintext: `${API_KEY_PREFIX}${keyId}_${secret}` };
}

/** Length of a key: prefix, 16 hex characters, `_`, 43 base64url characters. */
const KEY_LENGTH = API_KEY_PREFIX.length + 2 * KEY_ID_BYTES + 1 + 43;
const SEPARATOR_AT = API_KEY_PREFIX.length + 2 * KEY_ID_BYTES;

/**
 * Splits a presented key, or undefined when it is not shaped like one of ours: what KEY_PATTERN
 * matches. Checked by character codes, as every request with a key runs it (a third of the
 * regular expression's cost); a test holds the two to the same answers.
 */
export function parseApiKey(presented: string): ParsedApiKey | undefined {
  if (
    presented.length !== KEY_LENGTH ||
    !presented.startsWith(API_KEY_PREFIX) ||
    presented.charCodeAt(SEPARATOR_AT) !== 0x5f
  )
    return undefined;
  for (let index = API_KEY_PREFIX.length; index < SEPARATOR_AT; index += 1) {
    if (!isLowerHex(presented.charCodeAt(index))) return undefined;
  }
  for (let index = SEPARATOR_AT + 1; index < KEY_LENGTH; index += 1) {
    if (!isBase64Url(presented.charCodeAt(index))) return undefined;
  }
  return {
    keyId: presented.slice(API_KEY_PREFIX.length, SEPARATOR_AT),
    secret: presented.slice(SEPARATOR_AT + 1),
  };
}

/** The shape of a key, as a regular expression (documentation, and the test's reference). */
export const KEY_PATTERN = /^tny_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

function isLowerHex(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || (code >= 0x61 && code <= 0x66);
}

function isBase64Url(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) ||
    (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a) ||
    code === 0x2d ||
    code === 0x5f
  );
}

export async function hashSecret(
  secret: string,
  iterations: number,
  salt = randomBytes(SALT_BYTES),
): Promise<StoredKeyHash> {
  const hash = await pbkdf2Async(secret, salt, iterations, HASH_BYTES, 'sha256');
  return { salt, hash, iterations };
}

/** Slow, constant-time check of a secret against its stored PBKDF2 hash. */
export async function verifySecret(secret: string, stored: StoredKeyHash): Promise<boolean> {
  const candidate = await pbkdf2Async(secret, stored.salt, stored.iterations, stored.hash.length, 'sha256');
  return candidate.length === stored.hash.length && timingSafeEqual(candidate, stored.hash);
}

/**
 * A fast keyed digest of a secret that already passed the slow check, kept in the in-process
 * cache instead of the secret. The key is random per process, so a dump of the cache is useless
 * elsewhere and the digest cannot be brute-forced offline without the process memory.
 */
export class VerifiedSecretDigester {
  // A random per-process prefix under SHA-256: the one-shot hash avoids creating an Hmac object on
  // the hot path, and length extension does not matter for comparing digests of whole secrets.
  readonly #key = randomBytes(32).toString('base64url');

  /** The digest as base64url text: half the cost of the same bytes as a Buffer. */
  digest(secret: string): string {
    return hash('sha256', `${this.#key}:${secret}`, 'base64url');
  }

  matches(secret: string, digest: string): boolean {
    return equalInConstantTime(this.digest(secret), digest);
  }
}

/** Compares two digests without stopping at the first difference (timingSafeEqual for strings). */
function equalInConstantTime(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return difference === 0;
}
