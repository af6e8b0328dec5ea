import { describe, expect, it } from 'vitest';
import { checkSlug } from '../../src/tenants/slug.js';

describe('checkSlug', () => {
  it.each(['acme', 'a1b', 'acme-corp', 'x'.repeat(63), '123'])('accepts %s', (slug) => {
    expect(checkSlug(slug)).toEqual({ ok: true, slug });
  });

  it.each([
    ['Acme', 'lowercase'],
    ['ab', '3 to 63'],
    ['x'.repeat(64), '3 to 63'],
    ['acme.corp', 'lowercase'],
    ['ac me', 'lowercase'],
    ['açme', 'lowercase'],
    ['-acme', 'hyphen'],
    ['acme-', 'hyphen'],
    ["acme';drop table x;--", 'lowercase'],
    ['xn--acme', '"--"'],
    ['admin', 'reserved'],
    ['www', 'reserved'],
    ['api', 'reserved'],
    ['0190f5c2-6f3d-7a2b-8c4d-0123456789ab', 'tenant id'],
  ])('refuses %s', (slug, reason) => {
    const checked = checkSlug(slug);
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.message).toContain(reason);
  });

  it('refuses slugs reserved in config', () => {
    expect(checkSlug('billing2', ['billing2']).ok).toBe(false);
  });

  it('refuses non-strings', () => {
    expect(checkSlug(42).ok).toBe(false);
  });
});
