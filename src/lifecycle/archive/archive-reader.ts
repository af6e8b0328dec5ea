import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as createExtract } from 'tar-stream';
import { TenantryError } from '../../errors.js';
import {
  ArchiveDecryptor,
  archiveError,
  BACKUP_KEY_VARIABLE,
  isEncryptedArchive,
} from './archive-encryption.js';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  type ArchiveHeader,
  type ArchiveManifest,
  countLines,
  HEADER_ENTRY,
  isSectionName,
  MANIFEST_ENTRY,
  MAX_DOCUMENT_BYTES,
  parseChunkEntry,
  type Section,
  type SectionSummary,
  sectionKey,
} from './archive-format.js';

export interface ArchiveReaderOptions {
  /** The backup key, for an encrypted archive. */
  readonly key?: Buffer;
}

/** What reading an archive yields, in order; `end` only once every section matched the manifest. */
export type ArchiveEvent =
  | { readonly kind: 'header'; readonly header: ArchiveHeader }
  | { readonly kind: 'chunk'; readonly section: Section; readonly data: Buffer }
  | { readonly kind: 'section-end'; readonly section: Section; readonly summary: SectionSummary }
  | { readonly kind: 'end'; readonly manifest: ArchiveManifest };

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/**
 * Reads an archive as a stream of events, checking as it goes: the format and its version, the
 * sections in the header's order, and at the end every section's rows, bytes and SHA-256 against
 * the manifest. Anything wrong throws a `validation_failed` error naming it (field `archive`),
 * and `end` is never yielded: a consumer that writes only after `end` writes nothing from a bad
 * archive. Chunks are yielded as they are read (at most CHUNK_BYTES each): memory stays flat.
 */
export async function* readArchive(
  input: Readable,
  options: ArchiveReaderOptions = {},
): AsyncGenerator<ArchiveEvent> {
  const source = await decoded(input, options);
  const extract = createExtract();
  source.on('error', (error: Error) => extract.destroy(wrapStreamError(error)));
  // The tar may be read to its end before gzip has checked its trailer (or the decryptor the last
  // segment): the whole stream must have ended cleanly before anything is trusted.
  const sourceFinished = finished(source);
  sourceFinished.catch(() => undefined);
  let ended = false;
  source.pipe(extract);
  let header: ArchiveHeader | undefined;
  let manifest: ArchiveManifest | undefined;
  let sectionIndex = -1;
  let chunkIndex = 0;
  let current: { section: Section; hash: Hash; rows: number; bytes: number } | undefined;
  const seen = new Map<string, SectionSummary>();
  const opened = (section: Section) => ({ section, hash: createHash('sha256'), rows: 0, bytes: 0 });
  const endSection = function* (): Generator<ArchiveEvent> {
    if (!current) return;
    const summary = { rows: current.rows, bytes: current.bytes, sha256: current.hash.digest('hex') };
    seen.set(sectionKey(current.section), summary);
    yield { kind: 'section-end', section: current.section, summary };
    current = undefined;
  };
  try {
    for await (const entry of extract) {
      const name = entry.header.name;
      if (manifest) throw archiveError(`it has an entry after its manifest (${name})`);
      if (!header) {
        if (name !== HEADER_ENTRY)
          throw archiveError(`it does not start with ${HEADER_ENTRY} (found ${name})`);
        header = checkHeader(await readDocument(entry as AsyncIterable<Buffer>, name));
        yield { kind: 'header', header };
        continue;
      }
      if (name === MANIFEST_ENTRY) {
        yield* endSection();
        for (sectionIndex += 1; sectionIndex < header.sections.length; sectionIndex += 1) {
          current = opened(header.sections[sectionIndex]!);
          yield* endSection();
        }
        manifest = checkManifest(await readDocument(entry as AsyncIterable<Buffer>, name));
        continue;
      }
      const chunk = parseChunkEntry(name);
      if (!chunk) throw archiveError(`it has an entry this format does not know: ${name}`);
      const key = `${chunk.kind}/${chunk.name}`;
      if (!current || sectionKey(current.section) !== key) {
        yield* endSection();
        // Sections with no rows have no entries: the ones skipped here are empty (the manifest
        // says whether they should be).
        const at = header.sections.findIndex(
          (section, index) => index > sectionIndex && sectionKey(section) === key,
        );
        if (at === -1) throw archiveError(`section ${key} is not the next one its header declares`);
        for (sectionIndex += 1; sectionIndex < at; sectionIndex += 1) {
          current = opened(header.sections[sectionIndex]!);
          yield* endSection();
        }
        current = opened(header.sections[at]!);
        chunkIndex = 0;
      }
      if (chunk.index !== chunkIndex) throw archiveError(`${name} is out of order`);
      chunkIndex += 1;
      for await (const data of entry as AsyncIterable<Buffer>) {
        current.hash.update(data);
        current.bytes += data.length;
        current.rows += countLines(data);
        yield { kind: 'chunk', section: current.section, data };
      }
    }
    // What follows the tar's end (its padding) is read too, so gzip reaches its trailer.
    source.unpipe(extract);
    source.resume();
    await sourceFinished;
    ended = true;
  } catch (error) {
    throw wrapStreamError(error);
  } finally {
    // Failed, or left early by the consumer: nothing more is read.
    if (!ended) {
      source.unpipe(extract);
      source.destroy();
    }
  }
  if (!header) throw archiveError('it is empty');
  if (!manifest) throw archiveError('it is cut short: its manifest is missing');

  compare(header, manifest, seen);
  yield { kind: 'end', manifest };
}

/** Reads the whole archive and checks it, without a database: what `tenants verify` prints. */
export async function verifyArchive(
  input: Readable,
  options: ArchiveReaderOptions = {},
): Promise<{ header: ArchiveHeader; manifest: ArchiveManifest }> {
  let header: ArchiveHeader | undefined;
  for await (const event of readArchive(input, options)) {
    if (event.kind === 'header') header = event.header;
    if (event.kind === 'end') return { header: header!, manifest: event.manifest };
  }
  throw archiveError('it ended without its manifest');
}

/** The archive's bytes after decryption (when encrypted), gunzipped. */
async function decoded(input: Readable, options: ArchiveReaderOptions): Promise<Readable> {
  const head = await peek(input, 8);
  const encrypted = isEncryptedArchive(head.bytes);
  if (!encrypted && !head.bytes.subarray(0, 2).equals(GZIP_MAGIC)) {
    throw archiveError(
      head.bytes.length === 0 ? 'it is empty' : 'it is not a Tenantry archive (neither gzip nor encrypted)',
    );
  }
  if (encrypted && !options.key) {
    throw archiveError(`it is encrypted: set ${BACKUP_KEY_VARIABLE} to the key it was written with`);
  }
  // Large output pieces: fewer round trips to the thread pool, fewer chunks down the line.
  const gunzip = createGunzip({ chunkSize: 256 * 1024 });
  if (encrypted) {
    const decryptor = new ArchiveDecryptor(options.key!);
    head.stream.on('error', (error: Error) => decryptor.destroy(error));
    decryptor.on('error', (error: Error) => gunzip.destroy(error));
    head.stream.pipe(decryptor).pipe(gunzip);
  } else {
    head.stream.on('error', (error: Error) => gunzip.destroy(error));
    head.stream.pipe(gunzip);
  }
  return gunzip;
}

/**
 * The first `size` bytes of `input` (fewer when it is shorter), put back in front of it: `stream`
 * (the input itself) still yields everything.
 */
async function peek(input: Readable, size: number): Promise<{ bytes: Buffer; stream: Readable }> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < size) {
    const chunk = input.read() as Buffer | string | null;
    if (chunk !== null) {
      const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      chunks.push(buffer);
      length += buffer.length;
      continue;
    }
    if (input.readableEnded || input.destroyed) break;
    const ended = await new Promise<boolean>((resolve, reject) => {
      const settle = (result: boolean, error?: Error) => {
        input.off('readable', onReadable);
        input.off('end', onEnd);
        input.off('error', onError);
        if (error) reject(error);
        else resolve(result);
      };
      const onReadable = () => settle(false);
      const onEnd = () => settle(true);
      const onError = (error: Error) => settle(true, error);
      input.once('readable', onReadable);
      input.once('end', onEnd);
      input.once('error', onError);
    });
    if (ended) break;
  }
  const bytes = Buffer.concat(chunks);
  if (bytes.length > 0) input.unshift(bytes);
  return { bytes: bytes.subarray(0, size), stream: input };
}

async function readDocument(entry: AsyncIterable<Buffer>, name: string): Promise<unknown> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of entry) {
    length += chunk.length;
    if (length > MAX_DOCUMENT_BYTES) throw archiveError(`${name} is larger than ${MAX_DOCUMENT_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw archiveError(`${name} is not valid JSON`);
  }
}

function checkHeader(value: unknown): ArchiveHeader {
  const header = value as Partial<ArchiveHeader> | null;
  if (!header || typeof header !== 'object' || header.format !== ARCHIVE_FORMAT) {
    throw archiveError(`${HEADER_ENTRY} does not describe a ${ARCHIVE_FORMAT}`);
  }
  checkVersion(header.formatVersion);
  if (!Array.isArray(header.sections)) throw archiveError(`${HEADER_ENTRY} lists no sections`);
  const keys = new Set<string>();
  for (const section of header.sections as unknown[]) {
    const candidate = section as Partial<Section> | null;
    const valid =
      candidate &&
      (candidate.kind === 'data' || candidate.kind === 'control') &&
      typeof candidate.name === 'string' &&
      isSectionName(candidate.name) &&
      (candidate.kind === 'control' ||
        (Array.isArray((candidate as { columns?: unknown }).columns) &&
          (candidate as { columns: unknown[] }).columns.every((column) => typeof column === 'string')));
    if (!valid) throw archiveError(`${HEADER_ENTRY} declares a section that is not well formed`);
    const key = sectionKey(candidate as Section);
    if (keys.has(key)) throw archiveError(`${HEADER_ENTRY} declares section ${key} twice`);
    keys.add(key);
  }
  return header as ArchiveHeader;
}

function checkManifest(value: unknown): ArchiveManifest {
  const manifest = value as Partial<ArchiveManifest> | null;
  if (!manifest || typeof manifest !== 'object' || manifest.format !== ARCHIVE_FORMAT) {
    throw archiveError(`${MANIFEST_ENTRY} is not a ${ARCHIVE_FORMAT} manifest`);
  }
  checkVersion(manifest.formatVersion);
  if (!manifest.sections || typeof manifest.sections !== 'object') {
    throw archiveError(`${MANIFEST_ENTRY} lists no sections`);
  }
  return manifest as ArchiveManifest;
}

function checkVersion(version: unknown): void {
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw archiveError('its format version is missing or not a whole number');
  }
  if (version > ARCHIVE_FORMAT_VERSION) {
    throw archiveError(
      `its format version ${version} is newer than this Tenantry reads (${ARCHIVE_FORMAT_VERSION}): upgrade Tenantry to read it`,
    );
  }
}

/** Every declared section against the manifest, and what was read against both. */
function compare(
  header: ArchiveHeader,
  manifest: ArchiveManifest,
  seen: ReadonlyMap<string, SectionSummary>,
): void {
  const declared = new Set(header.sections.map(sectionKey));
  for (const key of Object.keys(manifest.sections)) {
    if (!declared.has(key))
      throw archiveError(`its manifest lists section ${key}, which its header does not declare`);
  }
  for (const section of header.sections) {
    const key = sectionKey(section);
    const listed = manifest.sections[key];
    if (!listed) throw archiveError(`its manifest does not list section ${key}`);
    const read = seen.get(key);
    if (!read) throw archiveError(`section ${key} is missing`);
    if (read.rows !== listed.rows) {
      throw archiveError(`section ${key} holds ${read.rows} rows where its manifest says ${listed.rows}`);
    }
    if (read.bytes !== listed.bytes || read.sha256 !== listed.sha256) {
      throw archiveError(`section ${key} does not match its manifest's checksum: the archive was changed`);
    }
  }
}

/** Stream failures (a cut gzip stream, a broken tar header) as refusals of the archive. */
function wrapStreamError(error: unknown): Error {
  if (error instanceof TenantryError) return error;
  const code = (error as { code?: string }).code;
  if (code === 'Z_BUF_ERROR' || code === 'ERR_STREAM_PREMATURE_CLOSE') {
    return archiveError('it is cut short (its compressed stream ends early)');
  }
  if (typeof code === 'string' && code.startsWith('Z_'))
    return archiveError('its compressed stream is damaged');
  return archiveError(`it cannot be read (${(error as Error).message ?? String(error)})`);
}
