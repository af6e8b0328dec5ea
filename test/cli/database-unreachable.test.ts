import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { defineConfig, loadConfig } from '../../src/config/load-config.js';
import { DatabaseUnreachableError } from '../../src/db/connection-failure.js';
import { Tenantry } from '../../src/tenantry.js';
import { runCli, spawnCli } from '../helpers/cli.js';

/** A port on this machine that nothing listens on: connecting is refused at once. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A database that cannot be reached at start is named by the setting its URL came from and its
 * address (never the password), not as a bare `connect ECONNREFUSED 127.0.0.1:5432`.
 */
describe('an unreachable database at start', () => {
  let port: number;
  let dir: string;
  let url: string;

  beforeAll(async () => {
    port = await closedPort();
    url = `postgres://app:s3cret-pw@127.0.0.1:${port}/app`;
    dir = mkdtempSync(join(tmpdir(), 'tenantry-unreachable-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a CLI command names DATABASE_URL and the address, without the password (exit 1)', async () => {
    const result = await runCli(['tenants', 'list'], { DATABASE_URL: url, TENANTRY_CONFIG: '' });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      `error (unavailable): cannot reach PostgreSQL at 127.0.0.1:${port} (DATABASE_URL): connection refused\n`,
    );
    expect(result.stderr).not.toContain('s3cret');
  });

  it('names database.url when the URL came from the config file', async () => {
    const file = join(dir, 'tenantry.config.yaml');
    writeFileSync(file, YAML.stringify({ database: { url } }));
    const result = await runCli(['init-db', '--config', file], {});
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `cannot reach PostgreSQL at 127.0.0.1:${port} (database.url): connection refused`,
    );
  });

  it('names DATABASE_ADMIN_URL when the owner connection is the one that fails', async () => {
    const other = await closedPort();
    const result = await runCli(['doctor'], {
      DATABASE_URL: url,
      DATABASE_ADMIN_URL: `postgres://owner:0wner-pw@127.0.0.1:${other}/app`,
      TENANTRY_CONFIG: '',
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `cannot reach PostgreSQL at 127.0.0.1:${other} (DATABASE_ADMIN_URL): connection refused`,
    );
    expect(result.stderr).not.toContain('0wner-pw');
  });

  it('tenantry serve says the same and exits 1', async () => {
    const result = await spawnCli(['serve', '--port', '0'], {
      DATABASE_URL: url,
      TENANTRY_DATA_DIR: join(dir, 'data'),
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `error (unavailable): cannot reach PostgreSQL at 127.0.0.1:${port} (DATABASE_URL): connection refused`,
    );
    expect(result.stderr).not.toContain('s3cret');
  });

  it('the library gets the same error, code unavailable', async () => {
    const config = loadConfig({ env: { DATABASE_URL: url }, ignoreConfigFile: true });
    const error = await Tenantry.open({ config }).then(
      () => undefined,
      (thrown: unknown) => thrown,
    );
    expect(error).toBeInstanceOf(DatabaseUnreachableError);
    expect(error).toMatchObject({
      code: 'unavailable',
      setting: 'DATABASE_URL',
      address: `127.0.0.1:${port}`,
    });
    // A URL set in code is named by its key.
    const inCode = await Tenantry.open({ config: defineConfig({ database: { url } }) }).catch(
      (thrown) => thrown,
    );
    expect((inCode as Error).message).toBe(
      `cannot reach PostgreSQL at 127.0.0.1:${port} (database.url): connection refused`,
    );
  });
});
