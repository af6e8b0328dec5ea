import { describe, expect, it } from 'vitest';
import { hostFromHeader, hostSkeleton, normalizeHost } from '../../src/tenants/host.js';

describe('normalizeHost', () => {
  it.each([
    ['Acme.Example.COM', 'acme.example.com'],
    ['acme.example.com.', 'acme.example.com'],
    ['münchen.example', 'xn--mnchen-3ya.example'],
    ['xn--mnchen-3ya.example', 'xn--mnchen-3ya.example'],
    ['東京.jp', 'xn--1lqs71d.jp'],
    ['пример.рф', 'xn--e1afmkfd.xn--p1ai'],
    ['intranet', 'intranet'],
  ])('normalises %s to %s', (input, expected) => {
    expect(normalizeHost(input)).toEqual({ ok: true, host: expected });
  });

  it.each([
    ['acme.example.com:8080', 'port'],
    ['https://acme.example.com', 'scheme'],
    ['acme.example.com/path', 'path'],
    ['acme example.com', 'spaces'],
    ['', 'non-empty'],
    [`${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}.${'e'.repeat(60)}.com`, '253'],
    ['a'.repeat(64) + '.com', 'DNS label'],
    ['-acme.example.com', 'DNS label'],
    ['acme_corp.example.com', 'DNS label'],
    ['127.0.0.1', 'IP'],
    ['acme.123', 'not a valid'],
    // Cyrillic "а" in an otherwise Latin name.
    ['аcme.example.com', 'mixes scripts'],
    // All-Cyrillic letters that read as "paypal".
    ['раураl.com', 'mixes scripts'],
    ['рара.com', 'imitate Latin'],
    ['xn--80aa0cbo65f.com', 'imitate Latin'],
    // Full-width letters that IDNA would silently map to "acme".
    ['ａｃｍｅ.com', 'IDNA would change'],
    ['acme\u200b.example.com', 'invisible'],
    ['acme\u00ad.example.com', 'invisible'],
  ])('refuses %s', (input, reason) => {
    const checked = normalizeHost(input);
    expect(checked.ok).toBe(false);
    if (!checked.ok) expect(checked.message).toContain(reason);
  });
});

describe('hostFromHeader', () => {
  it.each([
    ['acme.localhost:3000', 'acme.localhost'],
    ['ACME.localhost.', 'acme.localhost'],
    ['acme.example.com', 'acme.example.com'],
    ['a.example.com, b.example.com', 'a.example.com'],
  ])('reads %s as %s', (header, expected) => {
    expect(hostFromHeader(header)).toBe(expected);
  });

  it.each([undefined, '', '127.0.0.1:3000', '[::1]:3000', 'bad_host.com', 'a/b'])('ignores %s', (header) => {
    expect(hostFromHeader(header)).toBeUndefined();
  });
});

describe('hostSkeleton', () => {
  it.each([
    ['xn--cme-iua.example.com', 'icme.example.com'],
    ['xn--strae-oqa.example.com', 'strasse.example.com'],
    ['xn--cme-fsb.example.com', 'acme.example.com'],
    ['rn.example.com', 'rn.example.com'],
    ['xn--bcher-kva.example.com', 'bücher.example.com'],
  ])('%s looks like %s', (host, skeleton) => {
    expect(hostSkeleton(host)).toBe(skeleton);
  });
});
