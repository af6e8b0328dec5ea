import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { runCli } from '../helpers/cli.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';

const CONFIG = 'server:\n  baseDomain: localhost\nplans:\n  two:\n    limits:\n      maxApiKeys: 2\n';

interface KeyJson {
  keyId: string;
  name: string;
  expiresAt: string | null;
  revokedAt: string | null;
}

describe.each(DRIVERS)('tenantry tenants keys create|revoke, on %s', (driver) => {
  let env: Record<string, string | undefined>;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tenantry-keys-cli-'));
    env = { TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN, TENANTRY_CONFIG: join(dir, 'tenantry.config.yaml') };
    writeFileSync(env.TENANTRY_CONFIG!, CONFIG);
    if (driver === 'postgres') {
      const database = await createDatabase();
      env.DATABASE_URL = database.url;
      cleanup = async () => {
        await database.drop();
        rmSync(dir, { recursive: true, force: true });
      };
    } else {
      env.TENANTRY_DATA_DIR = join(dir, 'data');
      cleanup = async () => rmSync(dir, { recursive: true, force: true });
      // Only init-db and serve create the embedded database.
      expect((await runCli(['init-db'], env)).code).toBe(0);
    }
  });
  afterAll(async () => {
    await cleanup?.();
  });

  const keys = async (slug: string): Promise<KeyJson[]> =>
    JSON.parse((await runCli(['tenants', 'keys', 'list', slug, '--include-revoked', '--json'], env)).stdout);

  it('creates named, expiring keys shown once, refuses past maxApiKeys, and revokes', async () => {
    const created = await runCli(['tenants', 'create', 'Keys', 'keys-cli', '--plan', 'two', '--json'], env);
    expect(created.code, created.stderr).toBe(0);

    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const issued = await runCli(
      ['tenants', 'keys', 'create', 'keys-cli', '--name', 'ci', '--expires', expires],
      env,
    );
    expect(issued.code, issued.stderr).toBe(0);
    expect(issued.stdout.trim()).toMatch(/^tny_[0-9a-f]{16}_\S{43}$/);
    expect(issued.stderr).toMatch(/shown only once/);
    const listed = await keys('keys-cli');
    expect(listed.map((key) => [key.name, key.expiresAt])).toEqual([
      ['default', null],
      ['ci', expires],
    ]);
    expect(JSON.stringify(listed)).not.toContain(issued.stdout.trim().slice(-43));

    const over = await runCli(['tenants', 'keys', 'create', 'keys-cli', '--name', 'third'], env);
    expect(over.code).toBe(1);
    expect(over.stderr).toMatch(/quota_exceeded.*maxApiKeys/);
    expect(await keys('keys-cli')).toHaveLength(2);

    const ci = listed[1]!;
    const revoked = await runCli(['tenants', 'keys', 'revoke', 'keys-cli', ci.keyId, '--json'], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ keyId: ci.keyId, name: 'ci' });
    expect((await keys('keys-cli')).find((key) => key.keyId === ci.keyId)?.revokedAt).not.toBeNull();
    const json = await runCli(['tenants', 'keys', 'create', 'keys-cli', '--json'], env);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: 'unnamed', expiresAt: null });
  });

  it('bad input exits 1 with the problem and changes nothing', async () => {
    await runCli(['tenants', 'create', 'Bad keys', 'keys-bad-cli'], env);
    const past = await runCli(['tenants', 'keys', 'create', 'keys-bad-cli', '--expires', '2001-01-01'], env);
    expect(past.code).toBe(1);
    expect(past.stderr).toMatch(/validation_failed.*expiresAt must be in the future/);
    const garbled = await runCli(['tenants', 'keys', 'create', 'keys-bad-cli', '--expires', 'soon'], env);
    expect(garbled.stderr).toMatch(/validation_failed/);
    const unknown = await runCli(['tenants', 'keys', 'revoke', 'keys-bad-cli', 'ffffffffffffffff'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/not_found/);
    expect((await runCli(['tenants', 'keys', 'revoke', 'keys-bad-cli'], env)).code).toBe(2);
    expect(await keys('keys-bad-cli')).toHaveLength(1);
  });
});

describe('tenantry tenants keys through a running server’s control socket', () => {
  let dir: string;
  let server: RunningServer;
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-keys-live-'));
    env = {
      TENANTRY_DATA_DIR: join(dir, 'data'),
      TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
      TENANTRY_CONFIG: join(dir, 'tenantry.config.yaml'),
    };
    writeFileSync(env.TENANTRY_CONFIG!, CONFIG);
    const config = loadConfig({ env: { ...env, PORT: '0' } });
    server = await startServer({ config, logger: false, notice: () => undefined });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const info = (key: string) => server.app.inject({ url: '/tenant-info', headers: { 'x-api-key': key } });

  it('the server serves a key the CLI created and refuses it the moment the CLI revokes it', async () => {
    // The server holds the embedded database: these commands run in the server's process.
    expect((await runCli(['tenants', 'create', 'Live', 'live-keys', '--plan', 'two'], env)).code).toBe(0);
    const issued = JSON.parse(
      (await runCli(['tenants', 'keys', 'create', 'live-keys', '--name', 'agent', '--json'], env)).stdout,
    );
    expect((await info(issued.key)).statusCode).toBe(200);

    const over = await runCli(['tenants', 'keys', 'create', 'live-keys'], env);
    expect(over.stderr).toMatch(/quota_exceeded/);
    const metrics = await server.app.inject({
      url: '/metrics',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(metrics.body).toContain('tenantry_quota_refused_total{tenant="live-keys",quota="maxApiKeys"} 1');

    const revoked = await runCli(['tenants', 'keys', 'revoke', 'live-keys', issued.keyId], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect((await info(issued.key)).statusCode).toBe(401);
  });
});
