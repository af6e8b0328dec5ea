import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
`;
const ROWS = 300_000;
/** The move's bulk copy into the new schema. */
const COPYING = `SELECT 1 FROM pg_stat_activity WHERE query LIKE 'INSERT INTO "t\\_%'`;

/**
 * kill -9 of the process running a move, during its bulk copy: the tenant serves from its one
 * complete copy (reads and writes), and a rerun drops the partial copy and moves it whole.
 */
describe.runIf(DRIVERS.includes('postgres'))('kill -9 during a move', () => {
  let dir: string;
  let env: Record<string, string | undefined>;
  let client: pg.Client;
  let drop: () => Promise<void>;
  let bigId: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-move-kill-'));
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
    client = new pg.Client({ connectionString: database.url });
    await client.connect();
    bigId = (await client.query<{ id: string }>("SELECT id FROM tenantry.tenants WHERE slug = 'big'"))
      .rows[0]!.id;
  }, 180_000);

  afterAll(async () => {
    await client?.end();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  const killed = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      child.on('exit', () => resolve());
      child.kill('SIGKILL');
    });

  const rowsAt = async (table: string) =>
    (await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = $1`, [bigId])).rows[0]
      .n as number;

  it('a move killed during its copy leaves the tenant serving from its source; a rerun moves it whole', async () => {
    const child = spawn(process.execPath, [BIN, 'tenants', 'move', 'big', '--to', 'schema'], {
      env: { ...process.env, TENANTRY_CONFIG: '', ...env },
      stdio: 'ignore',
    });
    await eventually(
      'the move copying rows',
      async () => ((await client.query(COPYING)).rowCount ?? 0) > 0,
      60_000,
    );
    await killed(child);
    const left = await client.query<{ isolation: string }>(
      'SELECT isolation FROM tenantry.tenants WHERE id = $1',
      [bigId],
    );
    expect(left.rows[0]?.isolation).toBe('row');
    // Its one complete copy serves reads and writes (the writes are noted, never refused).
    const tenantry = await Tenantry.open({ config: loadConfig({ env }) });
    try {
      await tenantry.withTenant('big', async (db) => {
        const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM notes');
        expect(rows[0]?.n).toBe(ROWS);
        await db.query(
          "INSERT INTO notes (tenant_id, id, title) VALUES (current_setting('tenantry.tenant_id')::uuid, gen_random_uuid(), 'after the kill')",
        );
      });
    } finally {
      await tenantry.close();
    }
    // The partial copy committed nothing.
    const schemaRows = await client.query(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = 'notes' AND c.reltuples > 0`,
      [tenantSchemaName(bigId)],
    );
    expect(schemaRows.rows[0].n).toBe(0);
    const rerun = await runCli(['tenants', 'move', 'big', '--to', 'schema', '--json'], env);
    expect(rerun.stderr).toBe('');
    expect(JSON.parse(rerun.stdout)).toMatchObject({ rows: ROWS + 1, to: { isolation: 'schema' } });
    expect(await rowsAt(`"${tenantSchemaName(bigId)}".notes`)).toBe(ROWS + 1);
    // The old copy stays sealed for the grace period; --finish drops it now.
    expect(await rowsAt('app.notes')).toBe(ROWS + 1);
    expect((await runCli(['tenants', 'move', 'big', '--finish'], env)).code).toBe(0);
    expect(await rowsAt('app.notes')).toBe(0);
    const triggers = await client.query("SELECT 1 FROM pg_trigger WHERE tgname LIKE 'tenantry_move_%'");
    expect(triggers.rowCount).toBe(0);
  }, 180_000);
});
