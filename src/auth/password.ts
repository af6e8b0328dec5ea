import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';
import { TenantryError } from '../errors.js';

/**
 * Passwords hashed with scrypt (memory-hard, in Node's own crypto, no native addon): N = 2^15,
 * r = 8, p = 1 uses 32 MiB and about 60–100 ms per hash here. The parameters travel with each
 * hash (`scrypt$N$r$p$salt$hash`), so raising them later needs no migration: old hashes verify
 * with theirs.
 */
const COST = { N: 2 ** 15, r: 8, p: 1 } as const;
const KEY_BYTES = 32;
const SALT_BYTES = 16;
const MAX_MEMORY = 128 * 1024 * 1024;

export const PASSWORD_MIN_LENGTH = 12;
/** Long enough for any passphrase, short enough that hashing cannot be used to burn CPU. */
export const PASSWORD_MAX_LENGTH = 256;

function derive(password: string, salt: Buffer, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, KEY_BYTES, { ...options, maxmem: MAX_MEMORY }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** Refuses a password outside the length policy, naming the field. */
export function checkPasswordPolicy(password: string, field = 'password'): void {
  const length = [...password.normalize('NFKC')].length;
  if (length < PASSWORD_MIN_LENGTH)
    throw new TenantryError(
      'validation_failed',
      `${field} must be at least ${PASSWORD_MIN_LENGTH} characters`,
      {
        field,
      },
    );
  if (length > PASSWORD_MAX_LENGTH)
    throw new TenantryError(
      'validation_failed',
      `${field} must be at most ${PASSWORD_MAX_LENGTH} characters`,
      {
        field,
      },
    );
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, COST);
  return ['scrypt', COST.N, COST.r, COST.p, salt.toString('base64url'), key.toString('base64url')].join('$');
}

/** Constant-time check; a malformed stored hash is simply a mismatch. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const parts = stored.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = [Number(parts[1]), Number(parts[2]), Number(parts[3])];
  if (![N, r, p].every((value) => Number.isInteger(value) && value > 0)) return false;
  const expected = Buffer.from(parts[5]!, 'base64url');
  if (password.length > PASSWORD_MAX_LENGTH * 4) return false;
  const key = await derive(password, Buffer.from(parts[4]!, 'base64url'), { N, r, p });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

/** A hash of a random password: verifying against it costs what a real check costs. */
export async function decoyPasswordHash(): Promise<string> {
  return hashPassword(randomBytes(24).toString('base64url'));
}
