import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ArchiveWriter } from '../../src/lifecycle/archive/archive-writer.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'tenantry-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function archiveFile(name: string, key?: Buffer): Promise<string> {
  const file = join(dir, name);
  const out = createWriteStream(file);
  const writer = await ArchiveWriter.create(
    out,
    {
      tenantryVersion: '0.1.0',
      createdAt: '2026-12-07T12:00:00.000Z',
      tenant: { id: '0193a0c4-0000-7000-8000-000000000001', slug: 'acme', isolation: 'schema' },
      entities: { version: 2, declaration: {} },
      sections: [{ kind: 'data', name: 'projects', columns: ['id', 'name'] }],
      includesAudit: false,
    },
    key ? { key } : {},
  );
  await writer.writeSection({ kind: 'data', name: 'projects', columns: ['id', 'name'] }, [
    '1\tone\n',
    '2\ttwo\n',
  ]);
  await writer.finish();
  return file;
}

describe('tenantry tenants verify', () => {
  it('says an intact archive is intact, with its tenant and sections, and touches no database', async () => {
    const file = await archiveFile('plain.tar.gz');
    // No DATABASE_URL, no config, no data directory: nothing to connect to.
    const result = await runCli(['tenants', 'verify', file], {});
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('intact (format version 1)');
    expect(result.stdout).toContain('acme (0193a0c4-0000-7000-8000-000000000001), schema isolation');
    expect(result.stdout).toMatch(/data\/projects\s+2\s+12\s+[0-9a-f]{64}/);
    const json = await runCli(['tenants', 'verify', file, '--json'], {});
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: true,
      entities: 2,
      sections: [{ section: 'data/projects', rows: 2 }],
    });
  });

  it('exits 1 naming what is wrong with a changed archive, 2 for a file that is not there', async () => {
    const file = await archiveFile('changed.tar.gz');
    const bytes = readFileSync(file);
    writeFileSync(file, bytes.subarray(0, bytes.length - 30));
    const cut = await runCli(['tenants', 'verify', file], {});
    expect(cut.code).toBe(1);
    expect(cut.stderr).toMatch(/^error \(validation_failed\): the archive is refused: /);
    const missing = await runCli(['tenants', 'verify', join(dir, 'nothing-here')], {});
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('no archive file');
  });

  it('reads an encrypted archive with TENANTRY_BACKUP_KEY, and says what is missing without it', async () => {
    const key = randomBytes(32);
    const file = await archiveFile('sealed.tar.gz.enc', key);
    const withKey = await runCli(['tenants', 'verify', file], {
      TENANTRY_BACKUP_KEY: key.toString('base64'),
    });
    expect(withKey.code).toBe(0);
    expect(withKey.stdout).toContain('encrypted');
    const without = await runCli(['tenants', 'verify', file], {});
    expect(without.code).toBe(1);
    expect(without.stderr).toContain('it is encrypted: set TENANTRY_BACKUP_KEY');
    const wrong = await runCli(['tenants', 'verify', file], {
      TENANTRY_BACKUP_KEY: randomBytes(32).toString('hex'),
    });
    expect(wrong.stderr).toContain('does not decrypt with this TENANTRY_BACKUP_KEY');
    const malformed = await runCli(['tenants', 'verify', file], { TENANTRY_BACKUP_KEY: 'hunter2' });
    expect(malformed.stderr).toContain('TENANTRY_BACKUP_KEY must be 32 random bytes');
  });
});
