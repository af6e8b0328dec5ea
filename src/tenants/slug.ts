/** Slugs no tenant may take: they name the service's own hosts and paths. */
export const BUILT_IN_RESERVED_SLUGS: ReadonlySet<string> = new Set([
  'admin',
  'administrator',
  'api',
  'app',
  'apps',
  'assets',
  'auth',
  'billing',
  'blog',
  'cdn',
  'console',
  'dashboard',
  'dev',
  'docs',
  'email',
  'ftp',
  'health',
  'healthz',
  'help',
  'imap',
  'internal',
  'localhost',
  'login',
  'logout',
  'mail',
  'metrics',
  'mx',
  'ns1',
  'ns2',
  'oauth',
  'pop',
  'pop3',
  'readyz',
  'root',
  'signup',
  'register',
  'smtp',
  'sso',
  'staging',
  'static',
  'status',
  'support',
  'system',
  'tenantry',
  'test',
  'webmail',
  'www',
]);

const SLUG_PATTERN = /^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$/;
const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type SlugCheck =
  | { readonly ok: true; readonly slug: string }
  | { readonly ok: false; readonly message: string };

/**
 * A slug is a DNS label that stays one: lowercase `a-z0-9-`, 3–63 characters, no leading or
 * trailing hyphen, no `xx--` prefix (reserved for IDNA), not UUID-shaped (ids and slugs share
 * one lookup), not reserved. Input is never lowercased for the caller: `Acme` is refused.
 */
export function checkSlug(input: unknown, extraReserved: readonly string[] = []): SlugCheck {
  if (typeof input !== 'string') return { ok: false, message: 'slug must be a string' };
  if (input.length < 3 || input.length > 63) return { ok: false, message: 'slug must be 3 to 63 characters' };
  if (!SLUG_PATTERN.test(input)) {
    return {
      ok: false,
      message:
        'slug may contain only lowercase letters a-z, digits and hyphens, and may not start or end with a hyphen',
    };
  }
  if (input.slice(2, 4) === '--')
    return { ok: false, message: 'slug may not have "--" in 3rd and 4th position' };
  if (UUID_SHAPE.test(input)) return { ok: false, message: 'slug may not look like a tenant id' };
  if (isReservedSlug(input, extraReserved)) return { ok: false, message: `slug "${input}" is reserved` };
  return { ok: true, slug: input };
}

/** A name kept for the service itself: built in, or added by the config (`tenancy.reservedSlugs`). */
export function isReservedSlug(label: string, extraReserved: readonly string[] = []): boolean {
  return BUILT_IN_RESERVED_SLUGS.has(label) || extraReserved.includes(label);
}

export function isUuid(value: string): boolean {
  return UUID_SHAPE.test(value);
}
