import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { runCli, spawnCli } from '../helpers/cli.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';

describe.each(DRIVERS)('CLI on %s', (driver) => {
  let env: Record<string, string | undefined>;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tenantry-cli-'));
    if (driver === 'postgres') {
      const database = await createDatabase();
      env = { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
      cleanup = async () => {
        await database.drop();
        rmSync(dir, { recursive: true, force: true });
      };
    } else {
      env = { TENANTRY_DATA_DIR: join(dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
      cleanup = async () => rmSync(dir, { recursive: true, force: true });
    }
    env.TENANTRY_CONFIG = join(dir, 'tenantry.config.yaml');
    writeFileSync(env.TENANTRY_CONFIG, 'server:\n  baseDomain: localhost\n');
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it('init-db migrates, and is idempotent', async () => {
    const first = await runCli(['init-db'], env);
    expect(first.code, first.stderr).toBe(0);
    const second = await runCli(['init-db'], env);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/up to date/);
  });

  it('creates a tenant, prints the key once and warns on stderr', async () => {
    const created = await runCli(
      ['tenants', 'create', 'Acme Corp', 'acme', '--host', 'acme.example.com'],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/slug:\s+acme/);
    expect(created.stdout).toMatch(/api key:\s+tny_[0-9a-f]{16}_/);
    expect(created.stderr).toMatch(/shown only once/);

    const json = await runCli(['tenants', 'create', 'Beta', 'beta', '--json'], env);
    expect(json.code).toBe(0);
    const body = JSON.parse(json.stdout);
    expect(body.tenant.slug).toBe('beta');
    expect(body.apiKey.key).toMatch(/^tny_/);
  });

  it('lists, shows, deactivates, activates and deletes', async () => {
    const list = await runCli(['tenants', 'list', '--json'], env);
    expect(JSON.parse(list.stdout).map((t: { slug: string }) => t.slug)).toEqual(
      expect.arrayContaining(['acme', 'beta']),
    );

    expect((await runCli(['tenants', 'deactivate', 'beta'], env)).code).toBe(0);
    const active = JSON.parse((await runCli(['tenants', 'list', '--json'], env)).stdout);
    expect(active.map((t: { slug: string }) => t.slug)).not.toContain('beta');
    const all = JSON.parse((await runCli(['tenants', 'list', '--include-inactive', '--json'], env)).stdout);
    expect(all.find((t: { slug: string }) => t.slug === 'beta').status).toBe('inactive');

    const table = await runCli(['tenants', 'list', '--include-inactive'], env);
    expect(table.stdout).toMatch(/^ID\s+SLUG\s+NAME\s+STATUS/);

    expect((await runCli(['tenants', 'activate', 'beta'], env)).code).toBe(0);
    const shown = JSON.parse((await runCli(['tenants', 'show', 'beta', '--json'], env)).stdout);
    expect(shown.status).toBe('active');

    const deleted = await runCli(['tenants', 'delete', 'beta', '--json'], env);
    expect(JSON.parse(deleted.stdout).status).toBe('deleted');
    expect((await runCli(['tenants', 'show', 'beta'], env)).code).toBe(1);
  });

  it('manages hosts and keys', async () => {
    const added = await runCli(['tenants', 'hosts', 'add', 'acme', 'WWW.Acme.Example.com', '--json'], env);
    expect(added.code, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout).hosts).toEqual(['acme.example.com', 'www.acme.example.com']);
    expect((await runCli(['tenants', 'hosts', 'remove', 'acme', 'www.acme.example.com'], env)).code).toBe(0);

    const regenerated = await runCli(['tenants', 'regenerate-key', 'acme'], env);
    expect(regenerated.code).toBe(0);
    expect(regenerated.stdout.trim()).toMatch(/^tny_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(regenerated.stderr).toMatch(/shown only once/);

    const keys = JSON.parse((await runCli(['tenants', 'keys', 'list', 'acme', '--json'], env)).stdout);
    expect(keys).toHaveLength(1);
    expect(JSON.stringify(keys)).not.toContain(regenerated.stdout.trim().slice(-43));
  });

  it('shows the audit log, filtered by tenant', async () => {
    const result = await runCli(['audit', '--tenant', 'acme', '--json'], env);
    expect(result.code).toBe(0);
    const entries = JSON.parse(result.stdout);
    expect(entries.map((e: { action: string }) => e.action)).toEqual(
      expect.arrayContaining(['tenant.create', 'tenant.host.add', 'tenant.key.regenerate']),
    );
    expect(entries[0].actor).toMatch(/^cli:/);
  });

  it('exits 1 with a message on stderr when an operation fails', async () => {
    const invalid = await runCli(['tenants', 'create', 'Bad', 'Bad Slug'], env);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/validation_failed/);
    const duplicate = await runCli(['tenants', 'create', 'Acme again', 'acme'], env);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toMatch(/conflict/);
    expect((await runCli(['tenants', 'show', 'nobody'], env)).stderr).toMatch(/tenant_not_found/);
  });

  it('exits 2 on usage errors', async () => {
    expect((await runCli(['tenants', 'frobnicate'], env)).code).toBe(2);
    expect((await runCli(['tenants', 'create', 'only-name'], env)).code).toBe(2);
    expect((await runCli(['tenants', 'create', 'A', 'abc', '--isolation', 'cluster'], env)).code).toBe(2);
    expect((await runCli(['serve', '--port', 'eighty'], env)).code).toBe(2);
    expect((await runCli(['serve', '--port', '70000'], env)).code).toBe(2);
    // Zero is no count, limit or timeout (a lock timeout of 0 would be none at all).
    expect((await runCli(['migrate', '--lock-timeout', '0'], env)).code).toBe(2);
    expect((await runCli(['migrate', '--concurrency', '0'], env)).code).toBe(2);
    expect((await runCli(['audit', '--limit', '0'], env)).code).toBe(2);
  });

  it('exits 2 naming the key for an invalid config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tenantry-badcfg-'));
    const file = join(dir, 'tenantry.config.yaml');
    writeFileSync(file, 'server:\n  port: "not a port"\n');
    const result = await runCli(['tenants', 'list', '--config', file], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/server\.port/);
    writeFileSync(file, 'server:\n  prot: 3000\n');
    const typo = await runCli(['tenants', 'list', '--config', file], env);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/server\.prot: is not a known setting/);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('CLI against a running server on the embedded database', () => {
  let dir: string;
  let server: RunningServer;
  let env: Record<string, string | undefined>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-live-'));
    env = { TENANTRY_DATA_DIR: join(dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN, TENANTRY_CONFIG: '' };
    const config = loadConfig({ env: { ...env, PORT: '0' }, ignoreConfigFile: true });
    server = await startServer({ config, logger: false, notice: () => undefined });
  });
  afterAll(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('goes through the server’s control socket, and the server sees the change at once', async () => {
    const created = await spawnCli(['tenants', 'create', 'Live', 'live', '--json'], env);
    expect(created.code, created.stderr).toBe(0);
    const { apiKey } = JSON.parse(created.stdout);
    const ok = await server.app.inject({ url: '/tenant-info', headers: { 'x-api-key': apiKey.key } });
    expect(ok.statusCode).toBe(200);

    const deactivated = await spawnCli(['tenants', 'deactivate', 'live'], env);
    expect(deactivated.code, deactivated.stderr).toBe(0);
    const refused = await server.app.inject({ url: '/tenant-info', headers: { 'x-api-key': apiKey.key } });
    expect(refused.statusCode).toBe(401);

    const audit = await spawnCli(['audit', '--tenant', 'live', '--json'], env);
    expect(JSON.parse(audit.stdout)[0]).toMatchObject({
      action: 'tenant.deactivate',
      actor: expect.stringMatching(/^cli:/),
    });
  });

  it('the same failing command gives the same exit code and message through the socket as in process', async () => {
    const free = { ...env, TENANTRY_DATA_DIR: join(dir, 'free') };
    expect((await runCli(['init-db'], free)).code).toBe(0);
    expect((await runCli(['tenants', 'create', 'Same', 'same-co'], env)).code).toBe(0);
    expect((await runCli(['tenants', 'create', 'Same', 'same-co'], free)).code).toBe(0);
    for (const command of [
      ['tenants', 'show', 'nobody-here'],
      ['tenants', 'create', 'Bad', 'b'],
      ['tenants', 'keys', 'revoke', 'same-co', 'not-a-key-id'],
      ['tenants', 'config', 'set', 'same-co', 'limits.nope', '1'],
      ['users', 'reset-password', '--tenant', 'same-co', 'nobody@example.com'],
    ]) {
      const remote = await runCli(command, env);
      const local = await runCli(command, free);
      expect(remote.code, command.join(' ')).toBe(1);
      expect({ code: remote.code, stderr: remote.stderr }, command.join(' ')).toEqual({
        code: local.code,
        stderr: local.stderr,
      });
    }
  });

  it('init-db does not open the held database', async () => {
    const result = await spawnCli(['init-db'], env);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/held by a running server/);
  });
});
