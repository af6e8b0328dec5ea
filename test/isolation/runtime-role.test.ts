import pg from 'pg';
import { v7 as uuidv7 } from 'uuid';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ConnectionPool, TenantSettings } from '../../src/db/database.js';
import { quoteIdent } from '../../src/db/identifiers.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { startTestEnv, type TestEnv } from '../helpers/harness.js';
import {
  asTenant,
  countRows,
  createTestTenant,
  DRIVER_LEVELS,
  failureOf,
  Places,
  scoped,
  settingsFor,
  type TestTenant,
  tableOf,
} from '../helpers/isolation.js';
import { databaseUrl } from '../helpers/postgres.js';

const INSUFFICIENT_PRIVILEGE = '42501';

/**
 * The database itself, not the API's `WHERE tenant_id = ...`, keeps tenants apart: every
 * statement here runs as the runtime role through the engine's tenant transaction (or a bare
 * `SET LOCAL ROLE`) and deliberately has no tenant filter of its own.
 */
describe.each(DRIVER_LEVELS)('runtime role on %s, %s isolation', (driver, isolation) => {
  let env: TestEnv;
  let places: Places;
  let a: TestTenant;
  let b: TestTenant;
  let owner: ConnectionPool;
  let runtime: ConnectionPool;
  let asA: TenantSettings;
  let noTenant: TenantSettings;
  let role: string;
  const projects = () => tableOf(a.placement, 'projects');
  const tasks = () => tableOf(a.placement, 'tasks');

  /** Rows of A's tables that are not A's (B's rows at row level, a planted row otherwise). */
  const foreignRows = (table: string) =>
    countRows(owner, `SELECT count(*) AS n FROM ${table} WHERE tenant_id <> $1::uuid`, [a.id]);
  const ownRows = (table: string) =>
    countRows(owner, `SELECT count(*) AS n FROM ${table} WHERE tenant_id = $1::uuid`, [a.id]);

  async function seed(tenant: TestTenant, prefix: string): Promise<void> {
    const batch = await env.inject({
      method: 'POST',
      url: '/api/v1/projects/batch',
      headers: asTenant(tenant),
      payload: { rows: [{ name: `${prefix}-one` }, { name: `${prefix}-two` }] },
    });
    expect(batch.statusCode, batch.body).toBe(201);
    const [first] = batch.json().items as { id: string }[];
    const task = await env.inject({
      method: 'POST',
      url: '/api/v1/tasks',
      headers: asTenant(tenant),
      payload: { project: first!.id, title: `${prefix} task` },
    });
    expect(task.statusCode, task.body).toBe(201);
  }

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    places = new Places(env);
    role = env.config.database.runtimeRole;
    a = await createTestTenant(env, 'runtime-a', isolation);
    b = await createTestTenant(env, 'runtime-b', isolation);
    await seed(a, 'alpha');
    await seed(b, 'bravo');
    ({ owner, runtime } = await places.of(a.placement));
    asA = await settingsFor(env, a);
    noTenant = { ...asA, tenantId: '' };
    if (isolation !== 'row') {
      // A's tables hold only A's rows at this level; plant B rows there (as the owner, which
      // bypasses RLS) so that only row-level security can keep them from A.
      const planted = uuidv7();
      await owner.query(`INSERT INTO ${projects()} (tenant_id, id, name) VALUES ($1, $2, 'planted')`, [
        b.id,
        planted,
      ]);
      await owner.query(`INSERT INTO ${tasks()} (tenant_id, id, project, title) VALUES ($1, $2, $3, 'x')`, [
        b.id,
        uuidv7(),
        planted,
      ]);
    }
  });
  afterAll(async () => {
    await places?.close();
    await env?.close();
  });

  it('without a tenant, statements see zero rows: no error, never all rows', async () => {
    expect(await foreignRows(projects())).toBeGreaterThan(0);
    expect(await ownRows(projects())).toBe(2);
    expect(await ownRows(tasks())).toBe(1);

    expect(await countRows(scoped(runtime, noTenant), 'SELECT count(*) AS n FROM projects')).toBe(0);
    expect((await runtime.scopedQuery(noTenant, 'SELECT * FROM tasks')).rows).toEqual([]);
    const inTransaction = await runtime.scopedTransaction(noTenant, async (tx) => [
      await countRows(tx, `SELECT count(*) AS n FROM ${projects()}`),
      await countRows(tx, `SELECT count(*) AS n FROM ${tasks()}`),
    ]);
    expect(inTransaction).toEqual([0, 0]);

    // Only the role, no tenant setting at all in this transaction.
    const roleOnly = await runtime.transaction(async (tx) => {
      await tx.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
      const { rows } = await tx.query<{ user: string }>('SELECT current_user AS user');
      return {
        user: rows[0]?.user,
        projects: await countRows(tx, `SELECT count(*) AS n FROM ${projects()}`),
        tasks: await countRows(tx, `SELECT count(*) AS n FROM ${tasks()}`),
      };
    });
    expect(roleOnly).toEqual({ user: role, projects: 0, tasks: 0 });
  });

  it.runIf(driver === 'postgres')(
    'on a fresh session that never had a tenant, the runtime role sees zero rows',
    async () => {
      const client = new pg.Client({ connectionString: databaseUrl(a.placement.database ?? dbName(env)) });
      await client.connect();
      try {
        await client.query('BEGIN');
        await client.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
        const setting = await client.query<{ value: string | null }>(
          "SELECT current_setting('tenantry.tenant_id', true) AS value",
        );
        expect(setting.rows[0]?.value ?? null).toBeNull();
        const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${projects()}`);
        expect(Number(rows[0]?.n)).toBe(0);
        await client.query('ROLLBACK');
      } finally {
        await client.end();
      }
    },
  );

  it('tenant A sees only its own rows, with no WHERE clause in the statement', async () => {
    const { rows } = await runtime.scopedQuery<{ t: string; user: string }>(
      asA,
      'SELECT tenant_id::text AS t, current_user AS user FROM projects',
    );
    expect(rows).toHaveLength(2);
    expect(rows.every((row) => row.t === a.id && row.user === role)).toBe(true);
    const both = await runtime.scopedTransaction(asA, async (tx) => ({
      projects: (await tx.query<{ t: string }>('SELECT tenant_id::text AS t FROM projects')).rows,
      tasks: (await tx.query<{ t: string }>(`SELECT tenant_id::text AS t FROM ${tasks()}`)).rows,
    }));
    expect(both.projects.map((row) => row.t)).toEqual([a.id, a.id]);
    expect(both.tasks.map((row) => row.t)).toEqual([a.id]);
    // Filtering on the other tenant explicitly finds nothing either.
    expect(
      await countRows(scoped(runtime, asA), 'SELECT count(*) AS n FROM projects WHERE tenant_id = $1', [
        b.id,
      ]),
    ).toBe(0);
    if (isolation === 'row') {
      const asB = await settingsFor(env, b);
      const seenByB = await runtime.scopedQuery<{ t: string }>(
        asB,
        'SELECT tenant_id::text AS t FROM projects',
      );
      expect(seenByB.rows.map((row) => row.t)).toEqual([b.id, b.id]);
    }
    if (isolation === 'schema') {
      // A's transaction naming B's schema directly: RLS still hides B's rows.
      expect(await countRows(owner, `SELECT count(*) AS n FROM ${tableOf(b.placement, 'projects')}`)).toBe(2);
      expect(
        await countRows(
          scoped(runtime, asA),
          `SELECT count(*) AS n FROM ${tableOf(b.placement, 'projects')}`,
        ),
      ).toBe(0);
    }
  });

  it('INSERT of a row carrying another tenant’s tenant_id fails (WITH CHECK)', async () => {
    const insert = `INSERT INTO projects (tenant_id, id, name) VALUES ($1, $2, 'smuggled')`;
    expect(await failureOf(runtime.scopedQuery(asA, insert, [b.id, uuidv7()]))).toBe(INSUFFICIENT_PRIVILEGE);
    expect(await failureOf(runtime.scopedTransaction(asA, (tx) => tx.query(insert, [b.id, uuidv7()])))).toBe(
      INSUFFICIENT_PRIVILEGE,
    );
    // No tenant: not even a row claiming to be A's may be written.
    expect(await failureOf(runtime.scopedQuery(noTenant, insert, [a.id, uuidv7()]))).toBe(
      INSUFFICIENT_PRIVILEGE,
    );
    expect(await countRows(owner, `SELECT count(*) AS n FROM ${projects()} WHERE name = 'smuggled'`)).toBe(0);
    // The control: A's own tenant_id is accepted.
    const ok = await runtime.scopedQuery(asA, insert, [a.id, uuidv7()]);
    expect(ok.rowCount).toBe(1);
    await owner.query(`DELETE FROM ${projects()} WHERE name = 'smuggled'`);
  });

  it('UPDATE reaches only the tenant’s rows and cannot move a row to another tenant', async () => {
    const foreignBefore = await owner.query(
      `SELECT id, name, status FROM ${projects()} WHERE tenant_id <> $1::uuid ORDER BY id`,
      [a.id],
    );
    const targeted = await runtime.scopedQuery(
      asA,
      "UPDATE projects SET name = 'hijacked' WHERE tenant_id = $1",
      [b.id],
    );
    expect(targeted.rowCount).toBe(0);
    const all = await runtime.scopedQuery(asA, "UPDATE projects SET status = 'archived'");
    expect(all.rowCount).toBe(2);
    expect(
      (
        await owner.query(
          `SELECT id, name, status FROM ${projects()} WHERE tenant_id <> $1::uuid ORDER BY id`,
          [a.id],
        )
      ).rows,
    ).toEqual(foreignBefore.rows);

    expect(await failureOf(runtime.scopedQuery(asA, 'UPDATE projects SET tenant_id = $1', [b.id]))).toBe(
      INSUFFICIENT_PRIVILEGE,
    );
    expect(
      await failureOf(
        runtime.scopedTransaction(asA, (tx) => tx.query(`UPDATE ${tasks()} SET tenant_id = $1`, [b.id])),
      ),
    ).toBe(INSUFFICIENT_PRIVILEGE);
    expect(await ownRows(projects())).toBe(2);
    expect(await ownRows(tasks())).toBe(1);
  });

  it('TRUNCATE is refused, with or without a tenant', async () => {
    const before = await countRows(owner, `SELECT count(*) AS n FROM ${projects()}`);
    expect(await failureOf(runtime.scopedQuery(asA, 'TRUNCATE tasks'))).toBe(INSUFFICIENT_PRIVILEGE);
    expect(await failureOf(runtime.scopedQuery(asA, 'TRUNCATE projects CASCADE'))).toBe(
      INSUFFICIENT_PRIVILEGE,
    );
    expect(
      await failureOf(
        runtime.transaction(async (tx) => {
          await tx.query(`SET LOCAL ROLE ${quoteIdent(role)}`);
          await tx.query(`TRUNCATE ${tasks()}`);
        }),
      ),
    ).toBe(INSUFFICIENT_PRIVILEGE);
    expect(await countRows(owner, `SELECT count(*) AS n FROM ${projects()}`)).toBe(before);
  });

  it('the runtime role can neither switch row-level security off nor turn it off for itself', async () => {
    expect(
      await failureOf(runtime.scopedQuery(asA, `ALTER TABLE ${projects()} DISABLE ROW LEVEL SECURITY`)),
    ).toBe(INSUFFICIENT_PRIVILEGE);
    expect(
      await failureOf(runtime.scopedQuery(asA, `ALTER TABLE ${projects()} NO FORCE ROW LEVEL SECURITY`)),
    ).toBe(INSUFFICIENT_PRIVILEGE);
    expect(await failureOf(runtime.scopedQuery(asA, `DROP POLICY tenant_isolation ON ${projects()}`))).toBe(
      INSUFFICIENT_PRIVILEGE,
    );
    // row_security = off makes a query that RLS would filter fail, never return everything.
    expect(
      await failureOf(
        runtime.scopedTransaction(asA, async (tx) => {
          await tx.query("SELECT set_config('row_security', 'off', true)");
          return tx.query(`SELECT * FROM ${projects()}`);
        }),
      ),
    ).toBe(INSUFFICIENT_PRIVILEGE);
  });

  it('has no BYPASSRLS, is no superuser, is a member of no role, and owns nothing', async () => {
    const main = env.engine.db.owner;
    const { rows } = await main.query<{ super: boolean; bypass: boolean; memberships: string | number }>(
      `SELECT r.rolsuper AS super, r.rolbypassrls AS bypass,
              (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) AS memberships
         FROM pg_roles r WHERE r.rolname = $1`,
      [role],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ super: false, bypass: false });
    expect(Number(rows[0]!.memberships)).toBe(0);
    for (const db of new Set([main, owner])) {
      expect(
        await countRows(
          db,
          'SELECT count(*) AS n FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = $1)',
          [role],
        ),
      ).toBe(0);
      expect(
        await countRows(
          db,
          'SELECT count(*) AS n FROM pg_namespace WHERE nspowner = (SELECT oid FROM pg_roles WHERE rolname = $1)',
          [role],
        ),
      ).toBe(0);
    }
  });

  it('has only SELECT on shared tables: reads them, cannot write them', async () => {
    const main = env.engine.db.owner;
    const mainRuntime = env.engine.db.runtime;
    await main.query(`INSERT INTO shared.countries (id, code, name) VALUES ($1, $2, 'Shared land')`, [
      uuidv7(),
      `S${isolation.slice(0, 1).toUpperCase()}`,
    ]);
    const asAShared: TenantSettings = { ...asA, searchPath: quoteIdent('shared') };
    const seen = await mainRuntime.scopedQuery<{ code: string }>(asAShared, 'SELECT code FROM countries');
    expect(seen.rows.length).toBeGreaterThan(0);
    for (const statement of [
      `INSERT INTO shared.countries (id, code) VALUES ('${uuidv7()}', 'XX')`,
      "UPDATE shared.countries SET name = 'mine'",
      'DELETE FROM shared.countries',
      'TRUNCATE shared.countries',
    ]) {
      expect(await failureOf(mainRuntime.scopedQuery(asAShared, statement)), statement).toBe(
        INSUFFICIENT_PRIVILEGE,
      );
    }
    const privileges = await main.query<{ privilege: string; granted: boolean }>(
      `SELECT p AS privilege, has_table_privilege($1, 'shared.countries', p) AS granted
         FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p`,
      [role],
    );
    expect(Object.fromEntries(privileges.rows.map((row) => [row.privilege, row.granted]))).toEqual({
      SELECT: true,
      INSERT: false,
      UPDATE: false,
      DELETE: false,
      TRUNCATE: false,
      REFERENCES: false,
      TRIGGER: false,
    });
    expect(await countRows(main, "SELECT count(*) AS n FROM shared.countries WHERE code = 'XX'")).toBe(0);
  });

  it('DELETE without WHERE deletes only the tenant’s own rows', async () => {
    const foreignProjects = await foreignRows(projects());
    const foreignTasks = await foreignRows(tasks());
    expect(foreignProjects).toBeGreaterThan(0);
    const deletedTasks = await runtime.scopedQuery(asA, 'DELETE FROM tasks');
    expect(deletedTasks.rowCount).toBe(1);
    const deletedProjects = await runtime.scopedTransaction(asA, (tx) => tx.query('DELETE FROM projects'));
    expect(deletedProjects.rowCount).toBe(2);
    expect(await ownRows(projects())).toBe(0);
    expect(await ownRows(tasks())).toBe(0);
    expect(await foreignRows(projects())).toBe(foreignProjects);
    expect(await foreignRows(tasks())).toBe(foreignTasks);
    const listed = await env.inject({ url: '/api/v1/projects', headers: asTenant(b) });
    expect((listed.json().items as { name: string }[]).map((item) => item.name).sort()).toEqual([
      'bravo-one',
      'bravo-two',
    ]);
  });
});

/** The env's own database name (postgres driver). */
function dbName(env: TestEnv): string {
  return new URL(env.databaseUrl!).pathname.slice(1);
}
