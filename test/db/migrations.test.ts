import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { controlPlaneMigrations } from '../../src/db/control-plane-migrations.js';
import { controlPlaneVersion, DatabaseTooNewError, migrateControlPlane } from '../../src/db/migrator.js';
import { openPglite } from '../../src/db/pglite-driver.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { DRIVERS } from '../helpers/harness.js';
import { createDatabase, withServer } from '../helpers/postgres.js';

const BIN = new URL('../../bin/tenantry.js', import.meta.url).pathname;

function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

describe('control-plane migrations on pglite', () => {
  it('apply once, are idempotent and refuse a database newer than the code', async () => {
    const db = await openPglite();
    try {
      const first = await migrateControlPlane(db.owner);
      expect(first.from).toBe(0);
      expect(first.applied.map((m) => m.version)).toEqual(controlPlaneMigrations.map((m) => m.version));
      const second = await migrateControlPlane(db.owner);
      expect(second.applied).toEqual([]);
      expect(await controlPlaneVersion(db.owner)).toBe(first.to);

      await db.owner.query(
        "INSERT INTO tenantry.schema_migrations (version, name) VALUES (9999, 'from the future')",
      );
      await expect(migrateControlPlane(db.owner)).rejects.toBeInstanceOf(DatabaseTooNewError);
    } finally {
      await db.close();
    }
  });

  it('version 5 stores login names in NFC, leaving one that would collide as it is', async () => {
    const db = await openPglite();
    try {
      await migrateControlPlane(
        db.owner,
        controlPlaneMigrations.filter((m) => m.version < 5),
      );
      const insert = (id: string, email: string) =>
        db.owner.query("INSERT INTO tenantry.users (id, email, status) VALUES ($1, $2, 'active')", [
          id,
          email,
        ]);
      await insert('00000000-0000-7000-8000-000000000001', 'rene\u0301@x.test');
      await insert('00000000-0000-7000-8000-000000000002', 'zoe\u0308@x.test');
      await insert('00000000-0000-7000-8000-000000000003', 'zo\u00eb@x.test');
      await migrateControlPlane(db.owner);
      const { rows } = await db.owner.query<{ email: string }>(
        'SELECT email FROM tenantry.users ORDER BY id',
      );
      expect(rows.map((row) => row.email)).toEqual([
        'ren\u00e9@x.test',
        'zoe\u0308@x.test',
        'zo\u00eb@x.test',
      ]);
    } finally {
      await db.close();
    }
  });

  it('a failing step rolls back entirely and is retried next time', async () => {
    const db = await openPglite();
    try {
      const broken = [
        ...controlPlaneMigrations,
        {
          version: 1000,
          name: 'broken',
          sql: 'CREATE TABLE tenantry.half (id int);\nSELECT no_such_function();',
        },
      ];
      await expect(migrateControlPlane(db.owner, broken)).rejects.toThrow();
      const half = await db.owner.query("SELECT to_regclass('tenantry.half') AS t");
      expect(half.rows[0]!.t).toBeNull();
      expect(await controlPlaneVersion(db.owner)).toBe(controlPlaneMigrations.at(-1)!.version);
    } finally {
      await db.close();
    }
  });
});

describe.runIf(DRIVERS.includes('postgres'))('control-plane migrations on postgres', () => {
  const databases: { drop: () => Promise<void> }[] = [];
  const dropRoles: string[] = [];
  afterAll(async () => {
    for (const database of databases) await database.drop();
    for (const role of dropRoles) await withServer((client) => client.query(`DROP ROLE IF EXISTS ${role}`));
  });

  it('init-db creates the runtime role with its grants and the entity tables, not only the control plane', async () => {
    const database = await createDatabase({ template: null });
    databases.push(database);
    const role = `tenantry_rt_${randomBytes(4).toString('hex')}`;
    dropRoles.push(role);
    const dir = mkdtempSync(join(tmpdir(), 'tenantry-initdb-'));
    const configFile = join(dir, 'tenantry.config.yaml');
    writeFileSync(
      configFile,
      `database:\n  runtimeRole: ${role}\nentities:\n  notes:\n    scope: tenant\n    fields:\n      title: { type: text }\n`,
    );
    try {
      const result = await runCli(['init-db'], { DATABASE_URL: database.url, TENANTRY_CONFIG: configFile });
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout).toContain(`runtime role ${role}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const db = await openPostgres({ url: database.url, maxConnections: 1 });
    try {
      const { rows } = await db.owner.query<{
        login: boolean;
        bypass: boolean;
        tenants: boolean;
        notes: boolean;
        truncate: boolean;
      }>(
        `SELECT r.rolcanlogin AS login, r.rolbypassrls AS bypass,
                has_table_privilege($1, 'tenantry.tenants', 'SELECT') AS tenants,
                has_table_privilege($1, 'app.notes', 'SELECT') AS notes,
                has_table_privilege($1, 'app.notes', 'TRUNCATE') AS truncate
           FROM pg_roles r WHERE r.rolname = $1`,
        [role],
      );
      // The control plane is the owner's: tenant code under the runtime role reads none of it.
      expect(rows).toEqual([{ login: false, bypass: false, tenants: false, notes: true, truncate: false }]);
    } finally {
      await db.close();
    }
  });

  it('two processes running init-db at once apply every step exactly once', async () => {
    const database = await createDatabase({ template: null });
    databases.push(database);
    const env = { DATABASE_URL: database.url, TENANTRY_CONFIG: '' };
    const results = await Promise.all([
      runCli(['init-db'], env),
      runCli(['init-db'], env),
      runCli(['init-db'], env),
    ]);
    for (const result of results) expect(result.code, result.stderr).toBe(0);
    const applied = results.map((r) => r.stdout).join('\n');
    expect(applied.match(/applied 1:/g)).toHaveLength(1);

    const db = await openPostgres({ url: database.url, maxConnections: 1 });
    try {
      const { rows } = await db.owner.query<{ version: number; n: number }>(
        'SELECT version, count(*)::int AS n FROM tenantry.schema_migrations GROUP BY version',
      );
      expect(rows.every((row) => row.n === 1)).toBe(true);
      expect(rows).toHaveLength(controlPlaneMigrations.length);
    } finally {
      await db.close();
    }
  });
});
