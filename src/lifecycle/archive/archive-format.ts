/**
 * The tenant archive, format version 1 (docs/archive-format.md): a tar stream, gzip-compressed,
 * optionally encrypted (archive-encryption.ts). Entries, in this order:
 *
 *   tenantry-archive.json          the header: what the archive holds and in which order
 *   data/<table>/<n>.copy          a table's rows as PostgreSQL COPY text, in chunks
 *   control/<part>/<n>.jsonl       the tenant's control-plane records, one JSON object a line
 *   manifest.json                  last: rows, bytes and SHA-256 of every section
 *
 * The manifest comes last because the archive is written in one pass: counts and checksums are
 * known only once the rows have gone by. A reader checks each section against it before it
 * trusts anything, so a cut archive (no manifest) or a changed one (a count or checksum that
 * disagrees) is refused whole.
 */
export const ARCHIVE_FORMAT = 'tenantry-archive';
export const ARCHIVE_FORMAT_VERSION = 1;
export const HEADER_ENTRY = 'tenantry-archive.json';
export const MANIFEST_ENTRY = 'manifest.json';
/** Rows are cut into entries of this many bytes at most: a reader or writer holds one. */
export const CHUNK_BYTES = 4 * 1024 * 1024;
/** The header and the manifest are JSON documents of this size at most. */
export const MAX_DOCUMENT_BYTES = 64 * 1024 * 1024;

export type SectionKind = 'data' | 'control';

/** One section of the archive: a table's rows, or one kind of control-plane record. */
export interface SectionName {
  readonly kind: SectionKind;
  /** A table name (data) or a record kind (control): lowercase letters, digits, `_` and `-`. */
  readonly name: string;
}

export interface DataSection extends SectionName {
  readonly kind: 'data';
  /** The columns of the COPY text, in order. */
  readonly columns: readonly string[];
}

export interface ControlSection extends SectionName {
  readonly kind: 'control';
}

export type Section = DataSection | ControlSection;

export interface ArchiveHeader {
  readonly format: typeof ARCHIVE_FORMAT;
  readonly formatVersion: number;
  readonly tenantryVersion: string;
  readonly createdAt: string;
  /** The tenant as it was: id, slug, name, status, plan, config, isolation level. */
  readonly tenant: Readonly<Record<string, unknown>>;
  /** The entity declaration the rows follow, its version in the entity ledger and its digest. */
  readonly entities: { readonly version: number; readonly digest?: string; readonly declaration: unknown };
  /** Every section, in the order the archive holds them. */
  readonly sections: readonly Section[];
  readonly includesAudit: boolean;
}

/** What a section held, as the writer counted it. */
export interface SectionSummary {
  readonly rows: number;
  readonly bytes: number;
  /** SHA-256 of the section's bytes, all its chunks in order, hex. */
  readonly sha256: string;
}

export interface ArchiveManifest {
  readonly format: typeof ARCHIVE_FORMAT;
  readonly formatVersion: number;
  /** By `<kind>/<name>`. */
  readonly sections: Readonly<Record<string, SectionSummary>>;
}

/** The rows in a piece of COPY text or JSON lines: every row, and only a row, ends with a newline. */
export function countLines(buffer: Buffer): number {
  let count = 0;
  for (let at = buffer.indexOf(0x0a); at !== -1; at = buffer.indexOf(0x0a, at + 1)) count += 1;
  return count;
}

export const sectionKey = (section: SectionName): string => `${section.kind}/${section.name}`;

const SECTION_NAME = /^[a-z0-9_-]{1,63}$/;

export function isSectionName(name: string): boolean {
  return SECTION_NAME.test(name);
}

/** The entry name of chunk `index` of `section`. */
export function chunkEntry(section: SectionName, index: number): string {
  const extension = section.kind === 'data' ? 'copy' : 'jsonl';
  return `${section.kind}/${section.name}/${String(index).padStart(6, '0')}.${extension}`;
}

const CHUNK_ENTRY = /^(data|control)\/([a-z0-9_-]{1,63})\/(\d{6})\.(copy|jsonl)$/;

/** The section and index of a chunk entry's name, or undefined when it is not one. */
export function parseChunkEntry(
  name: string,
): { kind: SectionKind; name: string; index: number } | undefined {
  const match = CHUNK_ENTRY.exec(name);
  if (!match) return undefined;
  const kind = match[1] as SectionKind;
  if ((kind === 'data') !== (match[4] === 'copy')) return undefined;
  return { kind, name: match[2]!, index: Number(match[3]) };
}
