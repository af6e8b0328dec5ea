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
}

/**
 * Writes one tenant archive to `out` in one pass: the header, then each section in the header's
 * order (`writeSection`), then `finish` writes the manifest and waits until everything is out.
 * Memory holds one chunk of rows at a time, whatever the tenant's size: each entry is handed to
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
    const gzip = createGzip();
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
    const flush = async () => {
      if (pendingBytes === 0) return;
      await this.#entry(chunkEntry(section, index), Buffer.concat(pending, pendingBytes));
      index += 1;
      pending = [];
      pendingBytes = 0;
    };
    let lastByte = 0x0a;
    for await (const piece of content) {
      const buffer = typeof piece === 'string' ? Buffer.from(piece) : piece;
      if (buffer.length === 0) continue;
      hash.update(buffer);
      rows += countNewlines(buffer);
      bytes += buffer.length;
      lastByte = buffer[buffer.length - 1]!;
      pending.push(buffer);
      pendingBytes += buffer.length;
      if (pendingBytes >= CHUNK_BYTES) await flush();
    }
    if (lastByte !== 0x0a) throw new Error(`section ${sectionKey(section)} does not end with a newline`);
    await flush();
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

function countNewlines(buffer: Buffer): number {
  let count = 0;
  let at = buffer.indexOf(0x0a);
  while (at !== -1) {
    count += 1;
    at = buffer.indexOf(0x0a, at + 1);
  }
  return count;
}
