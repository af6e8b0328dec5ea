import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { tenantSchemaName } from '../../src/isolation/tenant-placement.js';
import { Tenantry } from '../../src/tenantry.js';
import { BIN, runCli } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';

const CONFIG = `
entities:
  notes:
    scope: tenant
    fields:
      title: { type: text, required: true }
      body: { type: text }
      parent: { type: ref, to: notes, onDelete: set-null }
`;
const ROWS = 300_000;
/** A restore's COPY of rows, into staging tables or straight into a new tenant's tables. */
const COPYING = "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'COPY %' AND query LIKE '% FROM STDIN'";

/**
 * kill -9 of a backup or a restore, at the points where it could leave something half done:
 * nothing half-visible stays, and a rerun or a repair finishes the job.
 */
describe.runIf(DRIVERS.includes('postgres'))('kill -9 during backup and restore', () => {
  let dir: string;
  let env: Record<string, string | undefined>;
  let client: pg.Client;
  let drop: () => Promise<void>;
  let archive: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-restore-kill-'));
    const database = await createDatabase();
    drop = database.drop;
    env = { DATABASE_URL: database.url, TENANTRY_CONFIG: join(dir, 'tenantry.config.yaml') };
    writeFileSync(env.TENANTRY_CONFIG!, CONFIG);
    expect((await runCli(['init-db'], env)).code).toBe(0);
    expect((await runCli(['tenants', 'create', 'Big', 'big'], env)).code).toBe(0);
    const tenantry = await Tenantry.open({ config: loadConfig({ env }) });
    try {
      await tenantry.withTenant('big', (db) =>
        db.query(
          `INSERT INTO notes (tenant_id, id, title, body)
           SELECT current_setting('tenantry.tenant_id')::uuid, gen_random_uuid(), 'note ' || n, repeat('x', 100)
             FROM generate_series(1, ${ROWS}) n`,
        ),
      );
    } finally {
      await tenantry.close();
    }
    archive = join(dir, 'big.tgz');
    expect((await runCli(['tenants', 'backup', 'big', '-o', archive], env)).code).toBe(0);
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
  }, 180_000);

  afterAll(async () => {
    await client?.end();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  const spawnTenantry = (args: string[]): ChildProcess =>
    spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, TENANTRY_CONFIG: '', ...env },
      stdio: 'ignore',
    });

  const killed = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      child.on('exit', () => resolve());
      child.kill('SIGKILL');
    });

  const statusOf = async (slug: string) =>
    (
      await client.query<{ id: string; status: string }>(
        'SELECT id, status FROM tenantry.tenants WHERE slug = $1',
        [slug],
      )
    ).rows[0];

  it('a restore killed while it copies leaves an unroutable tenant that a rerun replaces', async () => {
    const child = spawnTenantry([
      'tenants',
      'restore',
      archive,
      '--as',
      'big-rerun',
      '--isolation',
      'schema',
    ]);
    await eventually(
      'the restore copying rows',
      async () => ((await client.query(COPYING)).rowCount ?? 0) > 0,
      60_000,
    );
    await killed(child);
    const left = await statusOf('big-rerun');
    expect(left?.status).toBe('restoring');
    // Not routable: the library refuses it like a tenant that does not exist.
    const tenantry = await Tenantry.open({ config: loadConfig({ env }) });
    try {
      await expect(tenantry.withTenant('big-rerun', async () => undefined)).rejects.toMatchObject({
        code: 'tenant_not_found',
      });
    } finally {
      await tenantry.close();
    }
    const rerun = await runCli(
      ['tenants', 'restore', archive, '--as', 'big-rerun', '--isolation', 'schema', '--json'],
      env,
    );
    expect(rerun.stderr).toBe('');
    const report = JSON.parse(rerun.stdout) as { rows: number; tenant: { id: string; status: string } };
    expect(report).toMatchObject({ rows: ROWS, tenant: { status: 'active' } });
    // The first run's schema went with its tenant.
    const schemas = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
      tenantSchemaName(left!.id),
    ]);
    expect(schemas.rowCount).toBe(0);
    const copied = await client.query(
      `SELECT count(*)::int AS n FROM "${tenantSchemaName(report.tenant.id)}".notes`,
    );
    expect(copied.rows[0].n).toBe(ROWS);
  }, 180_000);

  it('a restore killed while it copies is removed by tenants repair', async () => {
    const child = spawnTenantry(['tenants', 'restore', archive, '--as', 'big-repair', '--isolation', 'row']);
    await eventually(
      'the restore copying rows',
      async () => ((await client.query(COPYING)).rowCount ?? 0) > 0,
      60_000,
    );
    await killed(child);
    const left = await statusOf('big-repair');
    expect(left?.status).toBe('restoring');
    const repaired = await runCli(['tenants', 'repair', left!.id, '--json'], env);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ action: 'removed' });
    expect(await statusOf('big-repair')).toBeUndefined();
    // The row tables hold nothing of it (the copy never committed).
    const rows = await client.query('SELECT count(*)::int AS n FROM app.notes WHERE tenant_id = $1', [
      left!.id,
    ]);
    expect(rows.rows[0].n).toBe(0);
  }, 180_000);

  it('a replace killed while it copies leaves the tenant’s rows as they were', async () => {
    const bigId = (await statusOf('big'))!.id;
    const count = async () =>
      (await client.query('SELECT count(*)::int AS n FROM app.notes WHERE tenant_id = $1', [bigId])).rows[0]
        .n;
    await client.query(
      'DELETE FROM app.notes WHERE tenant_id = $1 AND id IN (SELECT id FROM app.notes WHERE tenant_id = $1 LIMIT 10)',
      [bigId],
    );
    expect(await count()).toBe(ROWS - 10);
    const child = spawnTenantry(['tenants', 'restore', archive, '--replace']);
    await eventually(
      'the replace copying rows',
      async () => ((await client.query(COPYING)).rowCount ?? 0) > 0,
      60_000,
    );
    await killed(child);
    expect(await count()).toBe(ROWS - 10);
    expect((await statusOf('big'))?.status).toBe('active');
    const rerun = await runCli(['tenants', 'restore', archive, '--replace', '--json'], env);
    expect(rerun.stderr).toBe('');
    expect(JSON.parse(rerun.stdout)).toMatchObject({ replaced: true, rows: ROWS });
    expect(await count()).toBe(ROWS);
  }, 180_000);

  it('a backup killed midway leaves no file under its name', async () => {
    const target = join(dir, 'killed.tgz');
    const child = spawnTenantry(['tenants', 'backup', 'big', '-o', target]);
    await eventually(
      'the backup writing its temporary file',
      () => readdirSync(dir).some((name) => name.endsWith('.tenantry-partial')),
      60_000,
    );
    await killed(child);
    expect(existsSync(target)).toBe(false);
    // A rerun writes it whole.
    expect((await runCli(['tenants', 'backup', 'big', '-o', target], env)).code).toBe(0);
    expect((await runCli(['tenants', 'verify', target], env)).code).toBe(0);
  }, 180_000);
});
