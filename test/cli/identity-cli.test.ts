import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { startServer } from '../../src/server.js';
import { runCli } from '../helpers/cli.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';

describe.each(DRIVERS)('identity commands of the CLI on %s', (driver) => {
  let env: Record<string, string | undefined>;
  let dir: string;
  let cleanup: () => Promise<void>;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-idcli-'));
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
    // Only init-db and serve create the embedded database.
    expect((await runCli(['init-db'], env)).code).toBe(0);
  });
  afterAll(async () => cleanup?.());

  it('creates a tenant with its first admin, then users, roles and clients, each with --json', async () => {
    const created = await runCli(
      ['tenants', 'create', 'Acme', 'acme-cli', '--admin-email', 'It@Acme.test', '--json'],
      env,
    );
    expect(created.code, created.stderr).toBe(0);
    const tenant = JSON.parse(created.stdout);
    expect(tenant.admin.user).toMatchObject({
      email: 'it@acme.test',
      roles: [expect.objectContaining({ name: 'tenant-admin' })],
    });
    expect(tenant.admin.setupToken).toMatch(/^tnu_/);

    const plain = await runCli(['users', 'create', '--tenant', 'acme-cli', '--email', 'dev@acme.test'], env);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).toMatch(/set-up token: tnu_/);
    expect(plain.stderr).toMatch(/only once/);
    const withPassword = await runCli(
      [
        'users',
        'create',
        '--tenant',
        'acme-cli',
        '--email',
        'ro@acme.test',
        '--password',
        'a long enough password',
        '--role',
        'read-only',
        '--json',
      ],
      env,
    );
    expect(withPassword.code, withPassword.stderr).toBe(0);
    expect(JSON.parse(withPassword.stdout).setupToken).toBeUndefined();
    expect(withPassword.stderr).toMatch(/--password is visible .*--password-stdin/);

    const listed = JSON.parse(
      (await runCli(['users', 'list', '--tenant', 'acme-cli', '--json'], env)).stdout,
    );
    expect(listed.map((user: { email: string }) => user.email)).toEqual([
      'dev@acme.test',
      'it@acme.test',
      'ro@acme.test',
    ]);
    expect(listed.find((user: { email: string }) => user.email === 'dev@acme.test').roles).toEqual([
      expect.objectContaining({ name: 'member' }),
    ]);

    const deactivated = await runCli(
      ['users', 'deactivate', '--tenant', 'acme-cli', 'dev@acme.test', '--json'],
      env,
    );
    expect(JSON.parse(deactivated.stdout).status).toBe('inactive');
    const reset = await runCli(['users', 'reset-password', '--tenant', 'acme-cli', 'ro@acme.test'], env);
    expect(reset.stdout).toMatch(/set-up token: tnu_/);
    // The last admin cannot be deactivated, even by the CLI.
    const last = await runCli(['users', 'deactivate', '--tenant', 'acme-cli', 'it@acme.test'], env);
    expect(last.code).toBe(1);
    expect(last.stderr).toMatch(/last tenant admin/);

    const roles = JSON.parse((await runCli(['roles', 'list', '--tenant', 'acme-cli', '--json'], env)).stdout);
    expect(roles.map((role: { name: string }) => role.name)).toEqual(['member', 'read-only', 'tenant-admin']);

    const client = await runCli(
      ['clients', 'create', '--tenant', 'acme-cli', '--name', 'agent', '--json'],
      env,
    );
    expect(client.code, client.stderr).toBe(0);
    const issued = JSON.parse(client.stdout);
    const clients = JSON.parse(
      (await runCli(['clients', 'list', '--tenant', 'acme-cli', '--json'], env)).stdout,
    );
    expect(clients.map((each: { clientId: string }) => each.clientId)).toEqual([issued.clientId]);
    expect((await runCli(['clients', 'revoke', '--tenant', 'acme-cli', issued.client.id], env)).code).toBe(0);
    expect(
      JSON.parse((await runCli(['clients', 'list', '--tenant', 'acme-cli', '--json'], env)).stdout),
    ).toEqual([]);

    // Bad input: a clear message and exit 1, nothing created.
    const taken = await runCli(['users', 'create', '--tenant', 'acme-cli', '--email', 'it@acme.test'], env);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/exists already/);
    const badRole = await runCli(
      ['users', 'create', '--tenant', 'acme-cli', '--email', 'x@acme.test', '--role', 'wizard'],
      env,
    );
    expect(badRole.code).toBe(1);
    expect(badRole.stderr).toMatch(/no role wizard/);
    // Contradictory or missing flags are usage errors (2), and nothing is created.
    const contradictory = await runCli(
      ['users', 'create', '--global-admin', '--tenant', 'acme-cli', '--email', 'both@acme.test'],
      env,
    );
    expect(contradictory.code).toBe(2);
    expect(contradictory.stderr).toMatch(/--global-admin/);
    const neither = await runCli(['users', 'create', '--email', 'neither@acme.test'], env);
    expect(neither.code).toBe(2);
    expect(
      JSON.parse((await runCli(['users', 'list', '--tenant', 'acme-cli', '--json'], env)).stdout),
    ).toHaveLength(3);
  });

  it('refuses to serve with the admin token disabled and no global admin (exit 2 naming the setting)', async () => {
    const file = join(dir, 'no-token.yaml');
    writeFileSync(file, 'auth:\n  adminToken: false\n');
    const refused = await runCli(['serve', '--port', '0', '--config', file], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('auth.adminToken');
    const admin = await runCli(
      ['users', 'create', '--global-admin', '--email', 'root@ops.test', '--json'],
      env,
    );
    expect(admin.code, admin.stderr).toBe(0);
    expect(JSON.parse(admin.stdout).user).toMatchObject({ globalAdmin: true, tenantId: null });
    const globals = JSON.parse((await runCli(['users', 'list', '--json'], env)).stdout);
    expect(globals.map((user: { email: string }) => user.email)).toEqual(['root@ops.test']);
  });

  it('--password-stdin sets the password from the first line of standard input; with --password it is a usage error', async () => {
    const fromStdin = await runCli(
      ['users', 'create', '--tenant', 'acme-cli', '--email', 'op@acme.test', '--password-stdin', '--json'],
      env,
      'another long password\nthe second line is not read\n',
    );
    expect(fromStdin.code, fromStdin.stderr).toBe(0);
    expect(JSON.parse(fromStdin.stdout).setupToken).toBeUndefined();
    expect(fromStdin.stderr).not.toMatch(/visible/);

    const both = await runCli(
      [
        'users',
        'create',
        '--tenant',
        'acme-cli',
        '--email',
        'x@acme.test',
        '--password',
        'p'.repeat(12),
        '--password-stdin',
      ],
      env,
      'p'.repeat(12),
    );
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/--password or --password-stdin/);
    const short = await runCli(
      ['users', 'create', '--tenant', 'acme-cli', '--email', 'y@acme.test', '--password-stdin'],
      env,
      '',
    );
    expect(short.code).not.toBe(0);
    expect(short.stderr).toMatch(/password/);

    // The password is the first line, without its line ending: it logs in; nobody else was made.
    const server = await startServer({
      config: loadConfig({ env: { ...env, PORT: '0' } }),
      logger: false,
      notice: () => undefined,
    });
    try {
      const login = (password: string) =>
        server.app.inject({
          method: 'POST',
          url: '/auth/login',
          headers: { host: 'acme-cli.localhost' },
          payload: { email: 'op@acme.test', password },
        });
      expect((await login('another long password')).statusCode).toBe(200);
      expect((await login('another long password\n')).statusCode).toBe(401);
    } finally {
      await server.close();
    }
    const listed = JSON.parse(
      (await runCli(['users', 'list', '--tenant', 'acme-cli', '--json'], env)).stdout,
    );
    expect(listed.map((user: { email: string }) => user.email)).not.toContain('x@acme.test');
    expect(listed.map((user: { email: string }) => user.email)).not.toContain('y@acme.test');
  });
});
