import { createHash } from 'node:crypto';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack as createPack, type Pack } from 'tar-stream';
import { ArchiveEncryptor } from './archive-encryption.js';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  type ArchiveHeader,
  type ArchiveManifest,
  CHUNK_BYTES,
  chunkEntry,
  countLines,
  HEADER_ENTRY,
  isSectionName,
  MANIFEST_ENTRY,
  type Section,
  type SectionSummary,
  sectionKey,
} from './archive-format.js';

export interface ArchiveWriterOptions {
  /** The 32-byte backup key: the archive is encrypted when given. */
  readonly key?: Buffer;
  /**
   * gzip level, 1 to 9 (default 3). Measured on COPY text of UUIDs, dates and JSON: level 3 takes
   * about 30 % less CPU than zlib's default 6 for about 5 % more bytes; on a machine whose cores
   * the database shares, the CPU is what a backup waits for.
   */
  readonly compressionLevel?: number;
}

export const DEFAULT_COMPRESSION_LEVEL = 3;

/**
 * Writes one tenant archive to `out` in one pass: the header, then each section in the header's
 * order (`writeSection`), then `finish` writes the manifest and waits until everything is out.
 * Memory holds two chunks of rows at most, whatever the tenant's size: each entry is handed to
 * the tar stream only once the one before has gone through gzip (and encryption) to `out`.
 */
export class ArchiveWriter {
  readonly #pack: Pack;
  readonly #header: ArchiveHeader;
  readonly #mtime: Date;
  readonly #done: Promise<void>;
  readonly #summaries: Record<string, SectionSummary> = {};
  #next = 0;

  private constructor(out: Writable, header: ArchiveHeader, options: ArchiveWriterOptions) {
    this.#header = header;
    this.#mtime = new Date(header.createdAt);
    this.#pack = createPack();
    const gzip = createGzip({ level: options.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL });
    this.#done = options.key
      ? pipeline(this.#pack, gzip, new ArchiveEncryptor(options.key), out)
      : pipeline(this.#pack, gzip, out);
    // A failure downstream surfaces through `finish`; until then it must not go unhandled.
    this.#done.catch(() => undefined);
  }

  static async create(
    out: Writable,
    header: Omit<ArchiveHeader, 'format' | 'formatVersion'>,
    options: ArchiveWriterOptions = {},
  ): Promise<ArchiveWriter> {
    for (const section of header.sections) {
      if (!isSectionName(section.name))
        throw new Error(`section name ${JSON.stringify(section.name)} is not allowed`);
    }
    const full: ArchiveHeader = { format: ARCHIVE_FORMAT, formatVersion: ARCHIVE_FORMAT_VERSION, ...header };
    const writer = new ArchiveWriter(out, full, options);
    await writer.#entry(HEADER_ENTRY, Buffer.from(JSON.stringify(full)));
    return writer;
  }

  /**
   * The next section's content, in the header's order. Data sections are COPY text (one row a
   * line), control sections JSON lines; either way a row is a line, and rows are counted so.
   */
  async writeSection(
    section: Section,
    content: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
  ): Promise<SectionSummary> {
    const expected = this.#header.sections[this.#next];
    if (!expected || sectionKey(expected) !== sectionKey(section)) {
      throw new Error(`section ${sectionKey(section)} is not the next one the header declares`);
    }
    this.#next += 1;
    const hash = createHash('sha256');
    let rows = 0;
    let bytes = 0;
    let index = 0;
    let pending: Buffer[] = [];
    let pendingBytes = 0;
    // One chunk is compressed (and written) while the next is read: the database and gzip work
    // at once, as pg_dump and its server do. Memory holds two chunks at most.
    let writing: Promise<void> = Promise.resolve();
    const flush = async () => {
      if (pendingBytes === 0) return;
      const content = Buffer.concat(pending, pendingBytes);
      const name = chunkEntry(section, index);
      index += 1;
      pending = [];
      pendingBytes = 0;
      await writing;
      writing = this.#entry(name, content);
      writing.catch(() => undefined);
    };
    let lastByte = 0x0a;
    for await (const piece of content) {
      const buffer = typeof piece === 'string' ? Buffer.from(piece) : piece;
      if (buffer.length === 0) continue;
      hash.update(buffer);
      rows += countLines(buffer);
      bytes += buffer.length;
      lastByte = buffer[buffer.length - 1]!;
      pending.push(buffer);
      pendingBytes += buffer.length;
      if (pendingBytes >= CHUNK_BYTES) await flush();
    }
    if (lastByte !== 0x0a) throw new Error(`section ${sectionKey(section)} does not end with a newline`);
    await flush();
    await writing;
    const summary = { rows, bytes, sha256: hash.digest('hex') };
    this.#summaries[sectionKey(section)] = summary;
    return summary;
  }

  /** Writes the manifest and waits until the whole archive is written to `out`. */
  async finish(): Promise<ArchiveManifest> {
    if (this.#next !== this.#header.sections.length) {
      throw new Error(`${this.#header.sections.length - this.#next} declared sections were not written`);
    }
    const manifest: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      formatVersion: ARCHIVE_FORMAT_VERSION,
      sections: this.#summaries,
    };
    await this.#entry(MANIFEST_ENTRY, Buffer.from(JSON.stringify(manifest)));
    this.#pack.finalize();
    await this.#done;
    return manifest;
  }

  #entry(name: string, content: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pack.entry({ name, size: content.length, mtime: this.#mtime }, content, (error) =>
        error ? reject(error) : resolve(),
      );
    });
  }
}
