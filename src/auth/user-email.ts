import { isSqlState } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';

const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/;

/** Control characters, invisible format characters (zero-width space, bidi controls) and line separators. */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * The one spelling a login name is stored and looked up in: trimmed, lower case, Unicode NFC (an
 * "é" typed as one character or as "e" and an accent is one account, not two).
 */
export function canonicalEmail(raw: string): string {
  return raw.trim().toLowerCase().normalize('NFC');
}

export function normaliseEmail(raw: unknown, field = 'email'): string {
  const email = typeof raw === 'string' ? canonicalEmail(raw) : '';
  // Invisible characters would make two accounts that look the same in every list and log.
  if (email.length > 254 || !EMAIL.test(email) || INVISIBLE.test(email))
    throw new TenantryError('validation_failed', `${field} is not a valid email address`, { field });
  return email;
}

/** Rethrows a unique violation on the users' email as the conflict a caller may see. */
export function emailTaken(error: unknown): never {
  if (isSqlState(error, 'UNIQUE_VIOLATION'))
    throw new TenantryError('conflict', 'an account with this email exists already', { field: 'email' });
  throw error;
}
