import { type ChildProcess, spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TENANT_LOCK_NAMESPACE } from '../../src/db/advisory-locks.js';
import { tenantDatabaseName, tenantSchemaName } from '../../src/isolation/tenant-placement.js';
import { startServer } from '../../src/server.js';
import { engineOf } from '../../src/tenantry.js';
import { BIN } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { type CreatedTenant, entitiesA, entitiesB, FleetFixture } from '../helpers/fleet.js';
import { DRIVERS } from '../helpers/harness.js';
import { withServer } from '../helpers/postgres.js';

const hasPostgres = DRIVERS.includes('postgres');

function spawnTenantry(args: string[], env: Record<string, string | undefined>): ChildProcess {
  return spawn(process.execPath, [BIN, ...args], { env: { ...process.env, TENANTRY_CONFIG: '', ...env } });
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
}

/** A session of its own on the control-plane database, to hold locks against the CLI. */
async function session(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

describe.runIf(hasPostgres)('interrupted fleet work resumes, on postgres', () => {
  const fleet = new FleetFixture('postgres');
  let configA: string;
  let configB: string;

  beforeAll(async () => {
    await fleet.start();
    configA = fleet.writeConfig('a', entitiesA());
    configB = fleet.writeConfig('b', entitiesB());
  });
  afterAll(async () => {
    await fleet.close();
  });

  /** The killed process's backend ends (releasing its locks) once it notices its client is gone. */
  const tenantLocksReleased = () =>
    until(
      async () =>
        (
          await fleet.sql<{ count: number }>(
            "SELECT count(*)::int AS count FROM pg_locks WHERE locktype = 'advisory' AND classid::int = $1",
            [TENANT_LOCK_NAMESPACE],
          )
        )[0]?.count === 0,
      15_000,
      'the killed process to release its tenant locks',
    );

  it('a migrate killed midway leaves every tenant at its old or new version, and a rerun finishes', async () => {
    const tenants: CreatedTenant[] = [];
    for (let index = 1; index <= 6; index += 1)
      tenants.push(await fleet.createTenant(configA, `killed-${index}`, 'schema'));
    tenants.sort((a, b) => (a.id < b.id ? -1 : 1));
    const blocked = tenants[3]!;
    // The fourth tenant's table is locked: a one-at-a-time migration stops there, mid-fleet.
    const holder = await session(`${fleet.env.DATABASE_URL}`);
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE "${tenantSchemaName(blocked.id)}".tasks IN ACCESS EXCLUSIVE MODE`);
    const child = spawnTenantry(['migrate', '--concurrency', '1', '--lock-timeout', '60000'], {
      ...fleet.env,
      TENANTRY_CONFIG: configB,
    });
    try {
      await until(
        async () => [...(await fleet.versions()).values()].filter((version) => version === 2).length >= 3,
        30_000,
        'three tenants to be migrated',
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      await killed(child);
    } finally {
      await killed(child);
      await holder.query('ROLLBACK');
      await holder.end();
    }
    await tenantLocksReleased();
    const versions = await fleet.versions();
    expect(versions.get(blocked.slug)).toBe(1);
    for (const tenant of tenants) {
      const columns = await fleet.columns(tenantSchemaName(tenant.id), 'tasks');
      // Never half a tenant: its tables and its recorded version agree.
      expect(columns.includes('priority'), tenant.slug).toBe(versions.get(tenant.slug) === 2);
    }
    expect(tenants.slice(0, 3).map((tenant) => versions.get(tenant.slug))).toEqual([2, 2, 2]);

    const rerun = await fleet.cli(['migrate', '--json'], configB);
    expect(rerun.code, rerun.stderr).toBe(0);
    const report = JSON.parse(rerun.stdout) as { migrated: number; failed: unknown[] };
    expect(report.failed).toEqual([]);
    const after = await fleet.versions();
    for (const tenant of tenants) expect(after.get(tenant.slug)).toBe(2);
  }, 90_000);

  it('Ctrl-C stops taking tenants, lets the one in flight finish or roll back, and a rerun resumes', async () => {
    const entities = entitiesB();
    entities.projects!.fields.budget = { type: 'number' };
    const configC = fleet.writeConfig('c', entities);
    const tenants = (
      await fleet.sql<{ id: string; slug: string }>(
        "SELECT id, slug FROM tenantry.tenants WHERE isolation = 'schema' ORDER BY id",
      )
    ).map((row) => ({ ...row, key: '' }));
    const blocked = tenants[1]!;
    const holder = await session(`${fleet.env.DATABASE_URL}`);
    await holder.query('BEGIN');
    await holder.query(`LOCK TABLE "${tenantSchemaName(blocked.id)}".projects IN ACCESS EXCLUSIVE MODE`);
    const child = spawnTenantry(['migrate', '--concurrency', '1', '--lock-timeout', '3000'], {
      ...fleet.env,
      TENANTRY_CONFIG: configC,
    });
    let stderr = '';
    child.stderr?.on('data', (chunk) => (stderr += chunk));
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await until(
        async () => (await fleet.versions()).get(tenants[0]!.slug) === 3,
        30_000,
        'the first tenant to be migrated',
      );
      child.kill('SIGINT');
      expect(await exit).toBe(1);
    } finally {
      await killed(child);
      await holder.query('ROLLBACK');
      await holder.end();
    }
    expect(stderr).toContain('stopping after the tenants in flight');
    expect(stderr).toContain('interrupted: run `tenantry migrate` again to resume');
    const versions = await fleet.versions();
    expect(versions.get(blocked.slug)).toBe(2);
    expect(tenants.slice(2).every((tenant) => versions.get(tenant.slug) === 2)).toBe(true);
    const rerun = await fleet.cli(['migrate', '--json'], configC);
    expect(rerun.code, rerun.stderr).toBe(0);
    const after = await fleet.versions();
    for (const tenant of tenants) expect(after.get(tenant.slug)).toBe(3);
  }, 60_000);

  it.each(['schema', 'database'])(
    'a %s tenant whose provisioning was killed stays unroutable, and `tenants repair` finishes it',
    async (isolation) => {
      const slug = `crashed-${isolation}`;
      // The audit log is locked: provisioning builds the tables, then blocks on its last step.
      const holder = await session(`${fleet.env.DATABASE_URL}`);
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE tenantry.audit_log IN EXCLUSIVE MODE');
      const child = spawnTenantry(['tenants', 'create', 'Crashed', slug, '--isolation', isolation], {
        ...fleet.env,
        TENANTRY_CONFIG: configB,
      });
      let id: string;
      try {
        await until(
          async () =>
            (
              await fleet.sql(
                "SELECT 1 FROM tenantry.tenants t, pg_stat_activity a WHERE t.slug = $1 AND t.status = 'provisioning' AND a.wait_event_type = 'Lock' AND a.query LIKE '%audit_log%'",
                [slug],
              )
            ).length > 0,
          30_000,
          'provisioning to block',
        );
        await killed(child);
        id = (await fleet.sql<{ id: string }>('SELECT id FROM tenantry.tenants WHERE slug = $1', [slug]))[0]!
          .id;
      } finally {
        await killed(child);
        await holder.query('ROLLBACK');
        await holder.end();
      }
      await tenantLocksReleased();
      const [state] = await fleet.sql<{ status: string; schema_version: number | null }>(
        'SELECT status, schema_version FROM tenantry.tenants WHERE id = $1',
        [id],
      );
      expect(state).toEqual({ status: 'provisioning', schema_version: null });
      expect(await fleet.sql('SELECT 1 FROM tenantry.api_keys WHERE tenant_id = $1', [id])).toHaveLength(0);
      const server = await startServer({
        config: fleet.config(configB),
        notice: () => undefined,
        logger: false,
      });
      try {
        const unroutable = await server.app.inject({
          url: '/tenant-info',
          headers: { host: `${slug}.localhost` },
        });
        expect(unroutable.statusCode).toBe(404);

        const repaired = await fleet.cli(['tenants', 'repair', slug, '--json'], configB);
        expect(repaired.code, repaired.stderr).toBe(0);
        const report = JSON.parse(repaired.stdout) as {
          action: string;
          tenant: { status: string; schemaVersion: number };
          apiKey: { key: string };
        };
        expect(report.action).toBe('provisioned');
        expect(report.tenant).toMatchObject({ status: 'active', schemaVersion: 2 });
        const created = await server.app.inject({
          method: 'POST',
          url: '/api/v1/projects',
          headers: { 'x-api-key': report.apiKey.key },
          payload: { name: 'Recovered' },
        });
        expect(created.statusCode, created.body).toBe(201);
      } finally {
        await server.close();
      }
      const again = await fleet.cli(['tenants', 'repair', slug, '--json'], configB);
      expect(again.code, again.stderr).toBe(0);
      expect(JSON.parse(again.stdout)).toMatchObject({ action: 'checked', differences: [] });
      if (isolation === 'database') {
        const ledger = await fleet.sqlIn<{ version: number }>(
          tenantDatabaseName(id),
          'SELECT version FROM tenantry.entity_version',
        );
        expect(ledger).toEqual([{ version: 2 }]);
      }
    },
    90_000,
  );

  it('`tenants repair` names a tenant whose tables were changed behind the ledger', async () => {
    const tenant = await fleet.createTenant(configB, 'tampered', 'schema');
    await fleet.sql(`ALTER TABLE "${tenantSchemaName(tenant.id)}".projects ADD COLUMN sneaky text`);
    const result = await fleet.cli(['tenants', 'repair', tenant.slug, '--json'], configB);
    expect(result.code).toBe(1);
    expect(JSON.parse(result.stdout).differences).toEqual([
      `schema ${tenantSchemaName(tenant.id)}: table of "projects" has column "sneaky" that is not declared`,
    ]);
  });
});

describe.each(DRIVERS)('purging a tenant leaves nothing of it, on %s', (driver) => {
  const fleet = new FleetFixture(driver);
  let config: string;
  const levels = driver === 'postgres' ? ['row', 'schema', 'database'] : ['row', 'schema'];

  beforeAll(async () => {
    await fleet.start();
    config = fleet.writeConfig('b', entitiesB());
  });
  afterAll(async () => {
    await fleet.close();
  });

  /** Everything in the catalogue and the control plane that still mentions the tenant. */
  const traces = async (id: string): Promise<string[]> => {
    const compact = id.replaceAll('-', '');
    // One query: each opening of the embedded database costs about a second.
    const [row] = await fleet.sql<Record<string, boolean>>(
      `SELECT EXISTS (SELECT 1 FROM tenantry.tenants WHERE id = $1) AS "tenantry.tenants",
              EXISTS (SELECT 1 FROM tenantry.tenant_hosts WHERE tenant_id = $1) AS "tenantry.tenant_hosts",
              EXISTS (SELECT 1 FROM tenantry.api_keys WHERE tenant_id = $1) AS "tenantry.api_keys",
              EXISTS (SELECT 1 FROM app.projects WHERE tenant_id = $1) AS "app.projects",
              EXISTS (SELECT 1 FROM app.tasks WHERE tenant_id = $1) AS "app.tasks",
              EXISTS (SELECT 1 FROM pg_namespace WHERE nspname LIKE $2) AS "schema",
              EXISTS (SELECT 1 FROM pg_database WHERE datname LIKE $2) AS "database"`,
      [id, `%${compact}%`],
    );
    return Object.entries(row ?? {})
      .filter(([, present]) => present)
      .map(([name]) => name);
  };

  it.each(levels)(
    'a %s tenant with data: delete --purge removes rows, tables, keys, hosts and record',
    async (level) => {
      const server = await startServer({
        config: fleet.config(config),
        notice: () => undefined,
        logger: false,
      });
      let tenant: CreatedTenant;
      const neighbour = await fleet.createTenant(config, `neighbour-${level}`, level);
      try {
        tenant = await fleet.createTenant(
          config,
          `purged-${level}`,
          level,
          '--host',
          `purged-${level}.example.com`,
        );
        for (const who of [tenant, neighbour]) {
          const headers = { 'x-api-key': who.key };
          const project = await server.app.inject({
            method: 'POST',
            url: '/api/v1/projects',
            headers,
            payload: { name: 'Alpha' },
          });
          expect(project.statusCode, project.body).toBe(201);
          const task = await server.app.inject({
            method: 'POST',
            url: '/api/v1/tasks',
            headers,
            payload: { project: project.json().id, title: 'One' },
          });
          expect(task.statusCode, task.body).toBe(201);
        }
      } finally {
        await server.close();
      }
      expect((await traces(tenant.id)).length).toBeGreaterThan(0);
      const purged = await fleet.cli(['tenants', 'delete', tenant.slug, '--purge'], config);
      expect(purged.code, purged.stderr).toBe(0);
      expect(await traces(tenant.id)).toEqual([]);
      const audit = await fleet.sql<{ action: string }>(
        "SELECT action FROM tenantry.audit_log WHERE tenant_id = $1 AND outcome = 'success' ORDER BY id",
        [tenant.id],
      );
      expect(audit.map((entry) => entry.action)).toEqual(['tenant.create', 'tenant.delete', 'tenant.purge']);
      // The neighbour lost nothing.
      const check = await startServer({
        config: fleet.config(config),
        notice: () => undefined,
        logger: false,
      });
      try {
        const listed = await check.app.inject({
          url: '/api/v1/tasks',
          headers: { 'x-api-key': neighbour.key },
        });
        expect(listed.json().items).toHaveLength(1);
      } finally {
        await check.close();
      }
    },
  );

  it('a half-built tenant whose purge was asked for is purged by `migrate`, never brought back', async () => {
    const tenant = await fleet.createTenant(config, 'zombie', 'schema', '--host', 'zombie.example.com');
    // What a failed `delete --purge` of a tenant still being provisioned leaves.
    await fleet.sql(
      "UPDATE tenantry.tenants SET status = 'provisioning', purge_requested_at = now() WHERE id = $1",
      [tenant.id],
    );
    const result = await fleet.cli(['migrate', '--json'], config);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout).pending).toMatchObject({ purged: [tenant.id], repaired: [] });
    expect(await traces(tenant.id)).toEqual([]);
  });

  it('a purge interrupted after the soft delete is finished by `tenants repair`, and by `migrate`', async () => {
    for (const runner of ['repair', 'migrate'] as const) {
      const tenant = await fleet.createTenant(config, `half-purged-${runner}`, 'schema');
      const deleted = await fleet.cli(['tenants', 'delete', tenant.slug], config);
      expect(deleted.code, deleted.stderr).toBe(0);
      // What a crash right after the first step leaves: deleted, purge requested, schema still there.
      await fleet.sql('UPDATE tenantry.tenants SET purge_requested_at = now() WHERE id = $1', [tenant.id]);
      expect(await traces(tenant.id)).toEqual(['tenantry.tenants', 'tenantry.api_keys', 'schema']);
      const result =
        runner === 'repair'
          ? await fleet.cli(['tenants', 'repair', tenant.id, '--json'], config)
          : await fleet.cli(['migrate', '--json'], config);
      expect(result.code, result.stderr).toBe(0);
      if (runner === 'migrate') expect(JSON.parse(result.stdout).pending.purged).toEqual([tenant.id]);
      expect(await traces(tenant.id)).toEqual([]);
    }
  });
});

describe.runIf(hasPostgres)('database servers and templates, on postgres', () => {
  const fleet = new FleetFixture('postgres');
  let config: string;
  const second = 'postgres://postgres@localhost:5432/postgres';

  beforeAll(async () => {
    await fleet.start();
    config = fleet.writeConfig('b', entitiesB());
  });
  afterAll(async () => {
    await fleet.close();
  });

  it('refuses a runtime URL whose login cannot act as the runtime role', async () => {
    await fleet.sql('DROP ROLE IF EXISTS tenantry_outsider');
    await fleet.sql('CREATE ROLE tenantry_outsider LOGIN');
    try {
      const refused = await fleet.cli(
        [
          'servers',
          'add',
          'outsider',
          'postgres://tenantry_outsider@localhost:5432/postgres',
          '--admin-url',
          second,
        ],
        config,
      );
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('cannot act as the runtime role tenantry_runtime');
    } finally {
      await fleet.sql('DROP ROLE IF EXISTS tenantry_outsider');
    }
  });

  it('refuses a server that does not answer, a bad name, and a duplicate; changes nothing', async () => {
    const down = await fleet.cli(
      ['servers', 'add', 'down', 'postgres://postgres@127.0.0.1:1/postgres'],
      config,
    );
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('server "down" at postgres://postgres@127.0.0.1:1/postgres cannot be used');
    const badName = await fleet.cli(['servers', 'add', 'Bad Name', second], config);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toContain('validation_failed');
    const duplicate = await fleet.cli(['servers', 'add', 'main', second], config);
    expect(duplicate.code).toBe(1);
    expect(duplicate.stderr).toContain('already exists');
    const list = await fleet.cli(['servers', 'list', '--json'], config);
    expect((JSON.parse(list.stdout) as { name: string }[]).map((server) => server.name)).toEqual(['main']);
  });

  it('places database tenants on a chosen server or the least used one; removal waits for them', async () => {
    const added = await fleet.cli(['servers', 'add', 'second', second], config);
    expect(added.code, added.stderr).toBe(0);
    const chosen = await fleet.createTenant(config, 'on-second', 'database', '--server', 'second');
    const auto = await fleet.createTenant(config, 'on-main', 'database');
    const servers = await fleet.sql<{ slug: string; server: string }>(
      "SELECT slug, server FROM tenantry.tenants WHERE isolation = 'database' ORDER BY slug",
    );
    expect(servers).toEqual([
      { slug: 'on-main', server: 'main' },
      { slug: 'on-second', server: 'second' },
    ]);
    const unknown = await fleet.cli(
      ['tenants', 'create', 'Nowhere', 'nowhere', '--isolation', 'database', '--server', 'third'],
      config,
    );
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no database server "third"');

    const server = await startServer({
      config: fleet.config(config),
      notice: () => undefined,
      logger: false,
    });
    try {
      for (const tenant of [chosen, auto]) {
        const created = await server.app.inject({
          method: 'POST',
          url: '/api/v1/projects',
          headers: { 'x-api-key': tenant.key },
          payload: { name: `On ${tenant.slug}` },
        });
        expect(created.statusCode, created.body).toBe(201);
      }
      // The server moves: the running server hears of it, and its tenant is served at the new URL.
      const moved = 'postgres://postgres@127.0.0.1:5432/postgres';
      const updated = await fleet.cli(['servers', 'update', 'second', moved, '--json'], config);
      expect(updated.code, updated.stderr).toBe(0);
      expect(JSON.parse(updated.stdout)).toMatchObject({ name: 'second', url: moved });
      await eventually(
        'the running server uses the new URL',
        async () => (await engineOf(server.tenantry).servers.urls('second')).url === moved,
      );
      const listed = await server.app.inject({
        url: '/api/v1/projects',
        headers: { 'x-api-key': chosen.key },
      });
      expect(listed.statusCode, listed.body).toBe(200);
      const unreachable = await fleet.cli(
        ['servers', 'update', 'second', 'postgres://postgres@127.0.0.1:1/postgres'],
        config,
      );
      expect(unreachable.code).toBe(1);
      expect(unreachable.stderr).toContain('cannot be used');
      const main = await fleet.cli(['servers', 'update', 'main', moved], config);
      expect(main.code).toBe(1);
      expect(main.stderr).toContain('DATABASE_URL');
      expect((await fleet.cli(['servers', 'update', 'second', second], config)).code).toBe(0);
    } finally {
      await server.close();
    }
    const list = await fleet.cli(['servers', 'list', '--json'], config);
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({ name: 'main', tenants: 1 }),
      expect.objectContaining({ name: 'second', tenants: 1, url: second }),
    ]);
    const refused = await fleet.cli(['servers', 'remove', 'second'], config);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('still holds 1 tenant database');
    expect((await fleet.cli(['tenants', 'delete', chosen.slug, '--purge'], config)).code).toBe(0);
    const removed = await fleet.cli(['servers', 'remove', 'second'], config);
    expect(removed.code, removed.stderr).toBe(0);
  });

  it('database tenants are copied from a template at the current version, or built without one', async () => {
    const templated = await fleet.createTenant(config, 'from-template', 'database');
    const templates = await fleet.sql<{ name: string; version: number }>(
      'SELECT name, version FROM tenantry.database_templates',
    );
    expect(templates).toHaveLength(1);
    const [allowed] = await fleet.sql<{ datallowconn: boolean }>(
      'SELECT datallowconn FROM pg_database WHERE datname = $1',
      [templates[0]!.name],
    );
    expect(allowed?.datallowconn).toBe(false);
    const plain = await fleet.createTenant(
      fleet.writeConfig('no-templates', entitiesB(), { database: { templates: false } }),
      'no-template',
      'database',
    );
    // A template dropped behind the ledger's back is rebuilt, not used.
    await withServer((client) => client.query(`DROP DATABASE "${templates[0]!.name}"`));
    const rebuilt = await fleet.createTenant(config, 'after-drop', 'database');
    const [replacement] = await fleet.sql<{ name: string }>('SELECT name FROM tenantry.database_templates');
    expect(replacement?.name).not.toBe(templates[0]!.name);
    for (const tenant of [templated, plain, rebuilt]) {
      const database = tenantDatabaseName(tenant.id);
      expect(await fleet.sqlIn(database, 'SELECT version FROM tenantry.entity_version')).toEqual([
        { version: templates[0]!.version },
      ]);
      expect(await fleet.columns('app', 'tasks', database)).toEqual(
        expect.arrayContaining(['priority', 'notes']),
      );
      const repair = await fleet.cli(['tenants', 'repair', tenant.slug, '--json'], config);
      expect(JSON.parse(repair.stdout)).toMatchObject({ action: 'checked', differences: [] });
    }
  });
});
