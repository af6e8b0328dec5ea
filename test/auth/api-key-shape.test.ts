import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateApiKey, KEY_PATTERN, parseApiKey } from '../../src/auth/api-key.js';

/** What the regular expression makes of a string: the reference parseApiKey must agree with. */
function byPattern(presented: string) {
  const match = KEY_PATTERN.exec(presented);
  return match ? { keyId: match[1], secret: match[2] } : undefined;
}

// Characters around every class boundary the key's shape uses, and some outside ASCII.
const EDGE_CHARACTERS = [...'/09:@AFGZ[`afgz{-_.~ \n\u00e9\u0130\u212a'];

describe('the shape of an API key', () => {
  it('splits a generated key into its id and secret', () => {
    const key = generateApiKey();
    expect(parseApiKey(key.plaintext)).toEqual({ keyId: key.keyId, secret: key.secret });
  });

  it('answers as the pattern does for keys with one character changed, added or removed', () => {
    const position = fc.integer({ min: 0, max: 64 });
    const character = fc.constantFrom(...EDGE_CHARACTERS);
    const edit = fc.constantFrom('replace', 'insert', 'delete');
    fc.assert(
      fc.property(position, character, edit, (at, char, kind) => {
        const key = generateApiKey().plaintext;
        const edited =
          kind === 'replace'
            ? key.slice(0, at) + char + key.slice(at + 1)
            : kind === 'insert'
              ? key.slice(0, at) + char + key.slice(at)
              : key.slice(0, at) + key.slice(at + 1);
        expect(parseApiKey(edited)).toEqual(byPattern(edited));
      }),
      { numRuns: 2000 },
    );
  });

  it('answers as the pattern does for arbitrary strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        expect(parseApiKey(text)).toEqual(byPattern(text));
        expect(parseApiKey(`tny_${text}`)).toEqual(byPattern(`tny_${text}`));
      }),
    );
  });

  it('refuses uppercase hex in the id and a missing separator', () => {
    const { keyId, secret } = generateApiKey();
    expect(parseApiKey(`tny_${keyId.toUpperCase().replace(/^./, 'A')}_${secret}`)).toBeUndefined();
    expect(parseApiKey(`tny_${keyId}-${secret}`)).toBeUndefined();
    expect(parseApiKey(`TNY_${keyId}_${secret}`)).toBeUndefined();
  });
});
