import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { pack as createPack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { parseBackupKey, SEGMENT_BYTES } from '../../src/lifecycle/archive/archive-encryption.js';
import { type ArchiveHeader, CHUNK_BYTES, type Section } from '../../src/lifecycle/archive/archive-format.js';
import { readArchive, verifyArchive } from '../../src/lifecycle/archive/archive-reader.js';
import { ArchiveWriter } from '../../src/lifecycle/archive/archive-writer.js';

const SECTIONS: Section[] = [
  { kind: 'data', name: 'projects', columns: ['id', 'name', 'status'] },
  { kind: 'data', name: 'tasks', columns: ['id', 'title'] },
  { kind: 'control', name: 'users' },
];

const HEADER: Omit<ArchiveHeader, 'format' | 'formatVersion'> = {
  tenantryVersion: '0.1.0',
  createdAt: '2026-12-07T12:00:00.000Z',
  tenant: { id: '0193a0c4-0000-7000-8000-000000000001', slug: 'acme', name: 'Acme', isolation: 'row' },
  entities: { version: 3, declaration: { projects: {}, tasks: {} } },
  sections: SECTIONS,
  includesAudit: false,
};

// COPY text: tabs between columns, \N for null, backslash escapes inside values.
const PROJECTS = [
  '1\tÉcole 北京 🚀\tactive\n',
  '2\ttab\\there, newline\\nthere\t\\N\n',
  '3\tback\\\\slash\tarchived\n',
].join('');
const USERS = `${JSON.stringify({ email: 'a@example.com', name: 'Ä' })}\n`;

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function* pieces(text: string | Buffer, size = 7): AsyncGenerator<Buffer> {
  const buffer = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (let at = 0; at < buffer.length; at += size) yield buffer.subarray(at, at + size);
}

async function writeArchive(
  content: { projects: string | Buffer; tasks: string; users: string },
  key?: Buffer,
): Promise<Buffer> {
  const out = new PassThrough();
  const written = collect(out);
  const writer = await ArchiveWriter.create(out, HEADER, key ? { key } : {});
  await writer.writeSection(SECTIONS[0]!, pieces(content.projects, 65_536));
  await writer.writeSection(SECTIONS[1]!, pieces(content.tasks));
  await writer.writeSection(SECTIONS[2]!, pieces(content.users));
  await writer.finish();
  return written;
}

/** The sections' contents as a reader gives them back, and the events' kinds. */
async function readBack(archive: Buffer, key?: Buffer) {
  const contents = new Map<string, Buffer[]>();
  const kinds: string[] = [];
  // In pieces of odd sizes, as a file or a socket gives them.
  const input = Readable.from(
    [...Array(Math.ceil(archive.length / 9_973)).keys()].map((n) =>
      archive.subarray(n * 9_973, (n + 1) * 9_973),
    ),
  );
  for await (const event of readArchive(input, key ? { key } : {})) {
    kinds.push(
      event.kind === 'chunk' ? 'chunk' : `${event.kind}${'section' in event ? `:${event.section.name}` : ''}`,
    );
    if (event.kind === 'chunk') {
      const list = contents.get(event.section.name) ?? [];
      list.push(event.data);
      contents.set(event.section.name, list);
    }
  }
  const text = (name: string) => Buffer.concat(contents.get(name) ?? []);
  return { kinds: kinds.filter((kind) => kind !== 'chunk'), text };
}

/** An archive built by hand, entry by entry: for archives the writer would never make. */
async function craft(entries: [string, string][]): Promise<Buffer> {
  const pack = createPack();
  const tar = collect(pack);
  for (const [name, content] of entries) pack.entry({ name }, content);
  pack.finalize();
  return gzipSync(await tar);
}

const headerJson = (changes: Record<string, unknown> = {}) =>
  JSON.stringify({ format: 'tenantry-archive', formatVersion: 1, ...HEADER, ...changes });
const summary = (text: string) => ({
  rows: text.split('\n').length - 1,
  bytes: Buffer.byteLength(text),
  sha256: createHash('sha256').update(text).digest('hex'),
});

describe('the tenant archive', () => {
  it('gives back every section byte for byte, with empty sections and in order', async () => {
    const archive = await writeArchive({ projects: PROJECTS, tasks: '', users: USERS });
    const { kinds, text } = await readBack(archive);
    expect(kinds).toEqual([
      'header',
      'section-end:projects',
      'section-end:tasks',
      'section-end:users',
      'end',
    ]);
    expect(text('projects').toString()).toBe(PROJECTS);
    expect(text('tasks').length).toBe(0);
    expect(text('users').toString()).toBe(USERS);
    // Read as a file would come: in many small pieces.
    const pieced = Readable.from(
      [...Array(Math.ceil(archive.length / 100)).keys()].map((n) => archive.subarray(n * 100, n * 100 + 100)),
    );
    const { header, manifest } = await verifyArchive(pieced);
    expect(header.tenant).toEqual(HEADER.tenant);
    expect(manifest.sections['data/projects']).toEqual(summary(PROJECTS));
    expect(manifest.sections['data/tasks']).toEqual(summary(''));
  });

  it('encrypts with the backup key, across many segments and chunks, and reads back with it', async () => {
    const key = randomBytes(32);
    const line = `${'x'.repeat(99)}\n`;
    const big = line.repeat(Math.ceil((CHUNK_BYTES * 2.5) / line.length));
    const archive = await writeArchive({ projects: big, tasks: PROJECTS, users: USERS }, key);
    expect(archive.subarray(0, 8).toString('latin1')).toBe('TNYENC01');
    expect(archive.includes(Buffer.from('tenantry-archive'))).toBe(false);
    const { text } = await readBack(archive, key);
    expect(text('projects').equals(Buffer.from(big))).toBe(true);
    expect(text('tasks').toString()).toBe(PROJECTS);
  });

  describe('refuses, naming what is wrong', () => {
    const refusal = async (archive: Buffer, key?: Buffer) => {
      try {
        await verifyArchive(Readable.from([archive]), key ? { key } : {});
      } catch (error) {
        expect(error).toMatchObject({ code: 'validation_failed', field: 'archive' });
        return (error as Error).message;
      }
      throw new Error('the archive was accepted');
    };

    it('an archive cut short, wherever it is cut', async () => {
      const archive = await writeArchive({ projects: PROJECTS.repeat(2000), tasks: '', users: USERS });
      for (const keep of [0.2, 0.5, 0.9, 0.999]) {
        expect(await refusal(archive.subarray(0, Math.floor(archive.length * keep)))).toMatch(
          /cut short|damaged|cannot be read|missing/,
        );
      }
      expect(await refusal(archive.subarray(0, archive.length - 1))).toMatch(/refused/);
    });

    it('a flipped byte', async () => {
      const archive = await writeArchive({ projects: PROJECTS.repeat(500), tasks: '', users: USERS });
      const original = gunzipSync(archive);
      for (const from of [20, Math.floor(archive.length / 2), archive.length - 12]) {
        // A flip deflate does not look at (an unused code length) leaves the archive intact; the
        // first from here that changes what it decodes to must be refused.
        for (let at = from; at < archive.length; at += 1) {
          const changed = Buffer.from(archive);
          changed[at] = changed[at]! ^ 0x01;
          let same = false;
          try {
            same = gunzipSync(changed).equals(original);
          } catch {
            // Not even gzip: certainly changed.
          }
          if (same) continue;
          expect(await refusal(changed)).toMatch(/refused/);
          break;
        }
      }
    });

    it('an encrypted archive: a flipped byte, a cut at a segment, a wrong key, no key', async () => {
      const key = randomBytes(32);
      // Rows that do not compress, so that the archive spans several segments.
      const rows = Array.from(
        { length: 6000 },
        (_, n) => `${n}\t${randomBytes(32).toString('hex')}\tactive\n`,
      );
      const archive = await writeArchive({ projects: rows.join(''), tasks: '', users: USERS }, key);
      expect(archive.length).toBeGreaterThan(24 + 2 * (SEGMENT_BYTES + 16));
      const changed = Buffer.from(archive);
      changed[archive.length - 100] = changed[archive.length - 100]! ^ 0x80;
      expect(await refusal(changed, key)).toMatch(/fails its authentication/);
      // Cut exactly after the first sealed segment: a whole segment, but not sealed as the last.
      expect(await refusal(archive.subarray(0, 24 + SEGMENT_BYTES + 16), key)).toMatch(
        /fails its authentication|does not decrypt/,
      );
      expect(await refusal(archive, randomBytes(32))).toMatch(
        /does not decrypt with this TENANTRY_BACKUP_KEY/,
      );
      expect(await refusal(archive)).toMatch(/it is encrypted: set TENANTRY_BACKUP_KEY/);
    });

    it('a manifest whose counts or checksums disagree with the rows', async () => {
      const rows = '1\ta\n2\tb\n';
      const header = headerJson({ sections: [SECTIONS[1]] });
      const good = summary(rows);
      const archive = (sections: unknown) =>
        craft([
          ['tenantry-archive.json', header],
          ['data/tasks/000000.copy', rows],
          ['manifest.json', JSON.stringify({ format: 'tenantry-archive', formatVersion: 1, sections })],
        ]);
      await expect(
        verifyArchive(Readable.from([await archive({ 'data/tasks': good })])),
      ).resolves.toBeDefined();
      expect(await refusal(await archive({ 'data/tasks': { ...good, rows: 3 } }))).toMatch(
        /section data\/tasks holds 2 rows where its manifest says 3/,
      );
      expect(await refusal(await archive({ 'data/tasks': { ...good, sha256: '0'.repeat(64) } }))).toMatch(
        /does not match its manifest's checksum/,
      );
      expect(await refusal(await archive({}))).toMatch(/manifest does not list section data\/tasks/);
      expect(await refusal(await archive({ 'data/tasks': good, 'data/other': good }))).toMatch(
        /does not declare/,
      );
    });

    it('an unknown format version, a foreign file, an empty one, a stray or misplaced entry', async () => {
      expect(
        await refusal(await craft([['tenantry-archive.json', headerJson({ formatVersion: 2 })]])),
      ).toMatch(/format version 2 is newer than this Tenantry reads \(1\)/);
      expect(await refusal(randomBytes(300))).toMatch(/not a Tenantry archive/);
      expect(await refusal(Buffer.alloc(0))).toMatch(/empty/);
      expect(await refusal(gzipSync(Buffer.from('hello')))).toMatch(/refused/);
      expect(await refusal(await craft([['notes.txt', 'x']]))).toMatch(
        /does not start with tenantry-archive.json/,
      );
      expect(
        await refusal(
          await craft([
            ['tenantry-archive.json', headerJson()],
            ['data/evil/000000.copy', '1\n'],
          ]),
        ),
      ).toMatch(/section data\/evil is not the next one its header declares/);
      expect(await refusal(await craft([['tenantry-archive.json', headerJson()]]))).toMatch(
        /manifest is missing/,
      );
    });
  });

  it('reads the backup key as 64 hex digits or base64 of 32 bytes, and nothing else', () => {
    const key = randomBytes(32);
    expect(parseBackupKey(key.toString('hex')).equals(key)).toBe(true);
    expect(parseBackupKey(key.toString('base64')).equals(key)).toBe(true);
    expect(parseBackupKey(key.toString('base64url')).equals(key)).toBe(true);
    expect(() => parseBackupKey('secret')).toThrow(/TENANTRY_BACKUP_KEY must be 32 random bytes/);
    expect(() => parseBackupKey(randomBytes(16).toString('hex'))).toThrow(/TENANTRY_BACKUP_KEY/);
  });
});
