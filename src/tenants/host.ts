import { isIP } from 'node:net';
import { domainToASCII, domainToUnicode } from 'node:url';
import unhomoglyph from 'unhomoglyph';

export type HostCheck =
  | { readonly ok: true; readonly host: string }
  | { readonly ok: false; readonly message: string };

const MAX_HOST_LENGTH = 253;
const LABEL_PATTERN = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const FORBIDDEN_CHARACTERS = /[\s/\\?#@:[\]%*,;"'<>|{}^`]|\p{Cf}|\p{Cc}/u;

const SCRIPTS = [
  'Latin',
  'Cyrillic',
  'Greek',
  'Armenian',
  'Georgian',
  'Hebrew',
  'Arabic',
  'Devanagari',
  'Bengali',
  'Thai',
  'Han',
  'Hiragana',
  'Katakana',
  'Hangul',
  'Bopomofo',
] as const;
type Script = (typeof SCRIPTS)[number] | 'Other';
const SCRIPT_PATTERNS = SCRIPTS.map((name) => [name, new RegExp(`^\\p{Script=${name}}$`, 'u')] as const);

/** Mixes that real names use; any other mix of scripts in one label is a spoofing risk. */
const ALLOWED_MIXES: readonly ReadonlySet<Script>[] = [
  new Set(['Latin', 'Han', 'Hiragana', 'Katakana']),
  new Set(['Latin', 'Han', 'Bopomofo']),
  new Set(['Latin', 'Han', 'Hangul']),
];

/** Cyrillic and Greek letters that look like Latin ones: a label made only of them imitates a Latin name. */
const LATIN_LOOKALIKES = new Set([...'асеорхуіјѕԁһӏԛԝьптвкмзгѵαοιντκρυχ']);

function scriptOf(char: string): Script | undefined {
  if (!/\p{L}/u.test(char)) return undefined;
  for (const [name, pattern] of SCRIPT_PATTERNS) if (pattern.test(char)) return name;
  return 'Other';
}

function confusableReason(unicodeLabel: string): string | undefined {
  const scripts = new Set<Script>();
  for (const char of unicodeLabel) {
    const script = scriptOf(char);
    if (script) scripts.add(script);
  }
  if (scripts.size > 1 && !ALLOWED_MIXES.some((allowed) => [...scripts].every((s) => allowed.has(s)))) {
    return `label "${unicodeLabel}" mixes scripts (${[...scripts].join(', ')})`;
  }
  const letters = [...unicodeLabel].filter((char) => /\p{L}/u.test(char));
  if (
    (scripts.has('Cyrillic') || scripts.has('Greek')) &&
    letters.every((char) => LATIN_LOOKALIKES.has(char))
  ) {
    return `label "${unicodeLabel}" is made of letters that imitate Latin ones`;
  }
  return undefined;
}

/**
 * Normalises a hostname a tenant registers: lowercase, IDNA to punycode, trailing dot removed.
 * Refuses ports, paths, IP addresses, labels that are not LDH after conversion, characters that
 * IDNA would silently map (full-width letters, ligatures), and labels that spoof another script.
 */
export function normalizeHost(input: unknown): HostCheck {
  if (typeof input !== 'string' || input.length === 0)
    return { ok: false, message: 'host must be a non-empty string' };
  if (input.length > MAX_HOST_LENGTH + 1)
    return { ok: false, message: `host must be at most ${MAX_HOST_LENGTH} characters` };
  if (FORBIDDEN_CHARACTERS.test(input)) {
    return {
      ok: false,
      message: 'host must be a bare hostname: no scheme, port, path, spaces or invisible characters',
    };
  }
  const trimmed = input.endsWith('.') ? input.slice(0, -1) : input;
  if (isIP(trimmed)) return { ok: false, message: 'host must be a name, not an IP address' };
  const lower = trimmed.toLowerCase();
  const ascii = domainToASCII(lower);
  if (ascii === '' || ascii.endsWith('.')) return { ok: false, message: 'host is not a valid domain name' };
  // IDNA maps some characters to others (full-width letters, ligatures): a different spelling of
  // another name. Accept only input that is already what it will be displayed as.
  const roundTrip = domainToUnicode(ascii);
  if (roundTrip !== lower && ascii !== lower) {
    return { ok: false, message: 'host contains characters that IDNA would change; send its canonical form' };
  }
  if (ascii.length > MAX_HOST_LENGTH)
    return { ok: false, message: `host must be at most ${MAX_HOST_LENGTH} characters` };
  const labels = ascii.split('.');
  for (const label of labels) {
    if (!LABEL_PATTERN.test(label))
      return { ok: false, message: `host label "${label}" is not a valid DNS label` };
    if (label.startsWith('xn--')) {
      const unicodeLabel = domainToUnicode(label);
      if (unicodeLabel === label || unicodeLabel === '')
        return { ok: false, message: `host label "${label}" is not valid punycode` };
      const reason = confusableReason(unicodeLabel);
      if (reason) return { ok: false, message: `host ${reason}` };
    }
  }
  if (/^\d+$/.test(labels.at(-1) ?? ''))
    return { ok: false, message: 'host must not end in a numeric label' };
  return { ok: true, host: ascii };
}

/**
 * The hostname a request names, from a Host (or trusted X-Forwarded-Host) header value:
 * port and trailing dot removed, lowercased. Undefined when the header is absent or not a name.
 */
export function hostFromHeader(header: string | undefined): string | undefined {
  if (!header) return undefined;
  // A service sees few distinct Host values, and parsing one costs more than the rest of a cached
  // resolution: remember them. Bounded, so a client sending random hosts only churns the memo.
  if (header.length > MEMO_HEADER_LENGTH) return parseHostHeader(header);
  const known = parsedHosts.get(header);
  if (known !== undefined || parsedHosts.has(header)) return known;
  const host = parseHostHeader(header);
  if (parsedHosts.size >= PARSED_HOSTS_LIMIT) parsedHosts.clear();
  parsedHosts.set(header, host);
  return host;
}

const PARSED_HOSTS_LIMIT = 4096;
/** Longer than any valid host with a port: such a header is parsed (and refused) every time. */
const MEMO_HEADER_LENGTH = 300;
const parsedHosts = new Map<string, string | undefined>();

function parseHostHeader(header: string): string | undefined {
  const first = header.split(',')[0]?.trim() ?? '';
  if (first.startsWith('[')) return undefined; // an IPv6 literal never names a tenant
  const withoutPort = first.replace(/:\d{1,5}$/, '');
  const host = (withoutPort.endsWith('.') ? withoutPort.slice(0, -1) : withoutPort).toLowerCase();
  if (host.length === 0 || host.length > MAX_HOST_LENGTH || isIP(host)) return undefined;
  if (!host.split('.').every((label) => LABEL_PATTERN.test(label))) return undefined;
  return host;
}

/**
 * What a (normalised) host looks like: every character outside ASCII is case folded fully (`ß`
 * is `ss`, `ı` is `i`) and mapped to the character it imitates (Unicode TR39 confusables), so two
 * hosts with one skeleton would look alike in an address bar. ASCII stays as it is: `rn` and `m`
 * are distinct hosts a reader can tell apart.
 */
export function hostSkeleton(host: string): string {
  return host
    .split('.')
    .map((label) => {
      const unicode = label.startsWith('xn--') ? domainToUnicode(label) : label;
      let skeleton = '';
      for (const char of unicode) {
        if (char.charCodeAt(0) < 0x80) skeleton += char;
        else
          for (const folded of char.toUpperCase().toLowerCase().normalize('NFKC'))
            skeleton += folded.charCodeAt(0) < 0x80 ? folded : unhomoglyph(folded);
      }
      return skeleton.toLowerCase();
    })
    .join('.');
}
