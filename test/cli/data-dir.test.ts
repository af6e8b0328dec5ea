import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { defineConfig } from '../../src/config/load-config.js';
import { DataDirMissingError } from '../../src/engine/open-database.js';
import { Tenantry } from '../../src/tenantry.js';
import { BIN, sink } from '../helpers/cli.js';

/** The CLI run in `cwd` with only `env`, the way a person runs it from a directory. */
async function runIn(
  cwd: string,
  args: string[],
  env: Record<string, string> = {},
  shutdownSignal?: Promise<unknown>,
) {
  const out = sink();
  const err = sink();
  const code = await main(args, {
    stdout: out.stream,
    stderr: err.stream,
    env: { TENANTRY_CONFIG: '', ...env },
    cwd,
    stdin: Readable.from(['']),
    ...(shutdownSignal ? { shutdownSignal } : {}),
  });
  return { code, stdout: out.text(), stderr: err.text() };
}

/**
 * `mkdir x && cd x && tenantry tenants create Oops oops-co` used to succeed into a new
 * ./tenantry-data that no server reads. Only init-db and serve create the embedded database.
 */
describe('a CLI command where there is no embedded database', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-datadir-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('fails (exit 1) naming TENANTRY_DATA_DIR and the path, and creates nothing', async () => {
    const cwd = join(dir, 'x');
    mkdirSync(cwd);
    const result = await runIn(cwd, ['tenants', 'create', 'Oops', 'oops-co']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `error: no embedded database in ${join(cwd, 'tenantry-data')}: set TENANTRY_DATA_DIR`,
    );
    expect(result.stdout).toBe('');
    expect(readdirSync(cwd)).toEqual([]);
  });

  it.each([
    [['tenants', 'list']],
    [['tenants', 'show', 'acme']],
    [['doctor']],
    [['migrate']],
    [['users', 'list']],
    [['audit']],
    [['servers', 'list']],
  ])('%j fails the same way', async (args) => {
    const data = join(dir, 'elsewhere');
    const result = await runIn(dir, args, { TENANTRY_DATA_DIR: data });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no embedded database in ${data}: set TENANTRY_DATA_DIR`);
    expect(existsSync(data)).toBe(false);
  });

  it('an empty directory is no database either: nothing is written into it', async () => {
    const data = join(dir, 'empty');
    mkdirSync(data);
    const result = await runIn(dir, ['tenants', 'list'], { TENANTRY_DATA_DIR: data });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`no embedded database in ${data}`);
    expect(readdirSync(data)).toEqual([]);
  });

  it('init-db creates it, and then the commands work on it', async () => {
    const data = join(dir, 'made');
    expect((await runIn(dir, ['init-db'], { TENANTRY_DATA_DIR: data })).code).toBe(0);
    const created = await runIn(dir, ['tenants', 'create', 'Acme', 'acme'], { TENANTRY_DATA_DIR: data });
    expect(created.code, created.stderr).toBe(0);
    const listed = await runIn(dir, ['tenants', 'list', '--json'], { TENANTRY_DATA_DIR: data });
    expect(JSON.parse(listed.stdout).map((tenant: { slug: string }) => tenant.slug)).toEqual(['acme']);
  });

  it('serve creates it', async () => {
    const cwd = join(dir, 'served');
    mkdirSync(cwd);
    const result = await runIn(cwd, ['serve', '--port', '0'], {}, Promise.resolve());
    expect(result.code, result.stderr).toBe(0);
    expect(existsSync(join(cwd, 'tenantry-data', 'PG_VERSION'))).toBe(true);
  });

  it('the library creates it by default, and refuses with createDataDir: false', async () => {
    const config = defineConfig({ dataDir: join(dir, 'library') });
    await expect(Tenantry.open({ config, createDataDir: false })).rejects.toBeInstanceOf(DataDirMissingError);
    expect(existsSync(config.dataDir)).toBe(false);
    const tenantry = await Tenantry.open({ config });
    await tenantry.close();
    expect(existsSync(join(config.dataDir, 'PG_VERSION'))).toBe(true);
  });
});

describe('the tenantry binary', () => {
  it('ends quietly when the reader of its output has gone (| head)', async () => {
    const child = spawn(process.execPath, [BIN, '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
    // The reading end closes before the help is written: the write fails with EPIPE.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).not.toContain('EPIPE');
    expect(code).toBe(0);
  });
});
