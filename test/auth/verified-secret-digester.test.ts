import { describe, expect, it } from 'vitest';
import { generateApiKey, VerifiedSecretDigester } from '../../src/auth/api-key.js';

describe('the digest a verified key is cached under', () => {
  const digester = new VerifiedSecretDigester();
  const { secret } = generateApiKey();

  it('matches its own secret only, whichever character differs', () => {
    const digest = digester.digest(secret);
    expect(digest).not.toContain(secret);
    expect(digester.matches(secret, digest)).toBe(true);
    for (const at of [0, 21, secret.length - 1]) {
      const other = secret.slice(0, at) + (secret[at] === 'A' ? 'B' : 'A') + secret.slice(at + 1);
      expect(digester.matches(other, digest)).toBe(false);
    }
    expect(digester.matches(secret, digest.slice(0, -1))).toBe(false);
    expect(digester.matches(secret, `${digest}A`)).toBe(false);
    expect(digester.matches(secret, '')).toBe(false);
  });

  it('differs between processes: the key under which it is taken is random', () => {
    expect(new VerifiedSecretDigester().digest(secret)).not.toBe(digester.digest(secret));
  });
});
