import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { TenantryError } from '../../src/errors.js';
import { tenantDatabaseName, tenantSchemaName } from '../../src/isolation/tenant-placement.js';
import { TenantProvisioner } from '../../src/isolation/tenant-provisioner.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { databaseUrl, withServer } from '../helpers/postgres.js';

const RUNTIME_ROLE = 'tenantry_runtime';
const TENANT_TABLES = ['projects', 'tasks'];
const hasPostgres = DRIVERS.includes('postgres');

interface Provisioned {
  readonly id: string;
  readonly isolation: IsolationLevel;
}

const originalProvision = TenantProvisioner.prototype.provision;

/**
 * Makes provisioning fail after the real work was done (the schema or database exists with all
 * its tables), so the cleanup has something to remove. Returns the tenants it was called for.
 */
function failAfterProvisioning(env: TestEnv): Provisioned[] {
  const seen: Provisioned[] = [];
  const provisioner = env.engine.provisioner;
  vi.spyOn(provisioner, 'provision').mockImplementation(async (session, tenant, version) => {
    seen.push(tenant);
    await originalProvision.call(provisioner, session, tenant, version);
    throw new Error('injected: provisioning failed after the tables were built');
  });
  return seen;
}

function expectUnavailable(response: LightMyRequestResponse): void {
  expect(response.statusCode, response.body).toBe(503);
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  const body = response.json() as Record<string, unknown>;
  expect(body).toMatchObject({
    type: 'urn:tenantry:problem:unavailable',
    title: 'Service unavailable',
    status: 503,
    code: 'unavailable',
  });
  expect(typeof body.detail).toBe('string');
  expect(body).not.toHaveProperty('apiKey');
  expect(response.body).not.toMatch(/tny_|injected|relation|stack/);
}

async function tablesOf(
  query: (sql: string, params: unknown[]) => Promise<{ rows: { table_name: string }[] }>,
  schema: string,
) {
  const { rows } = await query(
    `SELECT table_name FROM information_schema.tables
      WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY table_name`,
    [schema],
  );
  return rows.map((row) => row.table_name);
}

/** RLS flags and policy names of each table of `schema`, keyed by table. */
async function securityOf(
  query: (
    sql: string,
    params: unknown[],
  ) => Promise<{ rows: { table: string; enabled: boolean; forced: boolean; policies: string[] }[] }>,
  schema: string,
) {
  const { rows } = await query(
    `SELECT c.relname AS table, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
            coalesce((SELECT array_agg(p.polname::text ORDER BY p.polname) FROM pg_policy p WHERE p.polrelid = c.oid),
                     '{}') AS policies
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind = 'r' ORDER BY c.relname`,
    [schema],
  );
  return rows;
}

async function withTenantDatabase<T>(name: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: databaseUrl(name) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

async function databaseExists(name: string): Promise<boolean> {
  return withServer(async (client) => {
    const { rows } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    return rows.length > 0;
  });
}

async function dropDatabases(names: readonly string[]): Promise<void> {
  await withServer(async (client) => {
    for (const name of names)
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  });
}

/** The tenant databases an env created, to drop after it is closed. */
async function tenantDatabasesOf(env: TestEnv): Promise<string[]> {
  const { rows } = await env.engine.db.owner.query<{ id: string }>(
    "SELECT id FROM tenantry.tenants WHERE isolation = 'database'",
  );
  return rows.map((row) => tenantDatabaseName(row.id));
}

async function auditOfCreate(env: TestEnv, slug: string) {
  const response = await env.admin('GET', '/admin/audit?action=tenant.create&limit=1000');
  expect(response.statusCode, response.body).toBe(200);
  const entries = response.json().entries as {
    outcome: string;
    target: string;
    tenantId: string | null;
    details: Record<string, unknown>;
  }[];
  return entries.filter((entry) => entry.target === slug);
}

/** Nothing of the tenant is left: no tenant row, host, key, schema or database. */
async function expectNothingLeft(env: TestEnv, tenant: Provisioned, slug: string): Promise<void> {
  const owner = env.engine.db.owner;
  const tenants = await owner.query('SELECT status FROM tenantry.tenants WHERE id = $1 OR slug = $2', [
    tenant.id,
    slug,
  ]);
  expect(tenants.rows).toEqual([]);
  expect(
    (await owner.query('SELECT 1 FROM tenantry.tenant_hosts WHERE tenant_id = $1', [tenant.id])).rows,
  ).toEqual([]);
  expect(
    (await owner.query('SELECT 1 FROM tenantry.api_keys WHERE tenant_id = $1', [tenant.id])).rows,
  ).toEqual([]);
  const schemas = await owner.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [
    tenantSchemaName(tenant.id),
  ]);
  expect(schemas.rows).toEqual([]);
  if (tenant.isolation === 'database')
    expect(await databaseExists(tenantDatabaseName(tenant.id))).toBe(false);
}

async function expectFailureAudited(env: TestEnv, tenant: Provisioned, slug: string): Promise<void> {
  const entries = await auditOfCreate(env, slug);
  expect(entries).toContainEqual(
    expect.objectContaining({
      outcome: 'failure',
      tenantId: tenant.id,
      details: expect.objectContaining({ code: 'provisioning_failed' }),
    }),
  );
}

/** The slug and host are free again: a new tenant takes them and serves requests. */
async function expectReusable(
  env: TestEnv,
  slug: string,
  isolation: IsolationLevel,
  host: string,
): Promise<void> {
  const again = await env.createTenant(slug, { isolation, hosts: [host] });
  const created = await env.inject({
    method: 'POST',
    url: '/api/v1/projects',
    headers: { 'x-api-key': again.key },
    payload: { name: 'Second try' },
  });
  expect(created.statusCode, created.body).toBe(201);
  const viaHost = await env.inject({ url: '/tenant-info', headers: { host } });
  expect(viaHost.statusCode, viaHost.body).toBe(200);
  expect(viaHost.json()).toMatchObject({ slug });
  const entries = await auditOfCreate(env, slug);
  expect(entries).toContainEqual(expect.objectContaining({ outcome: 'success', tenantId: again.id }));
}

describe.each(DRIVERS)('schema tenant provisioning on %s', (driver) => {
  let env: TestEnv;
  const query = <R>(sql: string, params: unknown[] = []) =>
    env.engine.db.owner.query<R & Record<string, unknown>>(sql, params);

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await env?.close();
  });

  it('creates the schema with every tenant table, forced row-level security and the runtime grants', async () => {
    const tenant = await env.createTenant('schema-one', { isolation: 'schema' });
    const schema = tenantSchemaName(tenant.id);
    expect(schema).toMatch(/^t_[0-9a-f]{32}$/);
    expect(await tablesOf(query, schema)).toEqual(TENANT_TABLES);
    expect(await securityOf(query, schema)).toEqual(
      TENANT_TABLES.map((table) => ({
        table,
        enabled: true,
        forced: true,
        policies: ['tenant_isolation', 'tenant_rows'],
      })),
    );
    const grants = await query<{ reads: boolean; truncates: boolean }>(
      `SELECT has_table_privilege($1, $2, 'SELECT') AS reads, has_table_privilege($1, $2, 'TRUNCATE') AS truncates`,
      [RUNTIME_ROLE, `${schema}.tasks`],
    );
    expect(grants.rows[0]).toEqual({ reads: true, truncates: false });
    const status = await query<{ status: string }>('SELECT status FROM tenantry.tenants WHERE id = $1', [
      tenant.id,
    ]);
    expect(status.rows[0]?.status).toBe('active');

    const created = await env.inject({
      method: 'POST',
      url: '/api/v1/projects',
      headers: { 'x-api-key': tenant.key },
      payload: { name: 'Kept apart' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const inSchema = await query<{ name: string }>(`SELECT name FROM ${schema}.projects`);
    expect(inSchema.rows).toEqual([{ name: 'Kept apart' }]);
    const inRowTables = await query('SELECT 1 FROM app.projects WHERE tenant_id = $1', [tenant.id]);
    expect(inRowTables.rows).toEqual([]);
  });

  it('a failure after the schema was built answers 503 and keeps nothing', async () => {
    const seen = failAfterProvisioning(env);
    const slug = 'half-schema';
    const host = 'half-schema.example.com';
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Half',
      slug,
      isolation: 'schema',
      hosts: [host],
    });
    expectUnavailable(response);
    expect(seen).toHaveLength(1);
    const tenant = seen[0]!;
    expect(tenant.isolation).toBe('schema');
    await expectNothingLeft(env, tenant, slug);
    // Neither its slug host nor its own host leads anywhere: the host is simply unknown again.
    const bySlugHost = await env.inject({ url: '/tenant-info', headers: { host: `${slug}.localhost` } });
    expect(bySlugHost.statusCode).toBe(404);
    expect(bySlugHost.json().code).toBe('tenant_not_found');
    const byHost = await env.inject({ url: '/tenant-info', headers: { host } });
    expect(byHost.statusCode).toBe(401);
    expect(byHost.json().code).toBe('tenant_required');
    await expectFailureAudited(env, tenant, slug);

    vi.restoreAllMocks();
    await expectReusable(env, slug, 'schema', host);
  });

  it.runIf(driver === 'postgres')(
    'a statement that fails in the middle of the DDL rolls the schema back and keeps nothing',
    async () => {
      const seen: Provisioned[] = [];
      vi.spyOn(env.engine.provisioner, 'provision').mockImplementation(async (session, tenant, version) => {
        seen.push(tenant);
        return originalProvision.call(env.engine.provisioner, session, tenant, version);
      });
      // A real database error, raised when the second table of a tenant schema is created.
      await query(`CREATE FUNCTION public.refuse_tenant_tasks() RETURNS event_trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands()
                      WHERE object_type = 'table' AND schema_name LIKE 't\\_%' AND object_identity LIKE '%.tasks') THEN
            RAISE EXCEPTION 'injected: no tasks table today';
          END IF;
        END $$`);
      await query(
        'CREATE EVENT TRIGGER refuse_tenant_tasks ON ddl_command_end EXECUTE FUNCTION public.refuse_tenant_tasks()',
      );
      let response: LightMyRequestResponse;
      try {
        response = await env.admin('POST', '/admin/tenants', {
          name: 'Broken',
          slug: 'broken-ddl',
          isolation: 'schema',
        });
      } finally {
        await query('DROP EVENT TRIGGER refuse_tenant_tasks');
        await query('DROP FUNCTION public.refuse_tenant_tasks()');
      }
      expectUnavailable(response);
      const tenant = seen[0]!;
      await expectNothingLeft(env, tenant, 'broken-ddl');
      await expectFailureAudited(env, tenant, 'broken-ddl');
      vi.restoreAllMocks();
      await expectReusable(env, 'broken-ddl', 'schema', 'broken-ddl.example.com');
    },
  );

  it('when the cleanup fails too, the tenant stays provisioning and never resolves', async () => {
    const seen = failAfterProvisioning(env);
    vi.spyOn(env.engine.provisioner, 'deprovision').mockRejectedValue(new Error('injected: cleanup failed'));
    const slug = 'stuck-schema';
    const host = 'stuck.example.com';
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Stuck',
      slug,
      isolation: 'schema',
      hosts: [host],
    });
    expectUnavailable(response);
    vi.restoreAllMocks();
    const tenant = seen[0]!;
    try {
      const row = await query<{ status: string }>('SELECT status FROM tenantry.tenants WHERE slug = $1', [
        slug,
      ]);
      expect(row.rows).toEqual([{ status: 'provisioning' }]);
      // No key was ever issued for it.
      expect((await query('SELECT 1 FROM tenantry.api_keys WHERE tenant_id = $1', [tenant.id])).rows).toEqual(
        [],
      );

      for (const hostHeader of [host, `${slug}.localhost`]) {
        const byHost = await env.inject({ url: '/api/v1/projects', headers: { host: hostHeader } });
        expect(byHost.statusCode, hostHeader).toBe(404);
        expect(byHost.json().code).toBe('tenant_not_found');
      }
      const byKey = await env.inject({
        url: '/api/v1/projects',
        headers: { 'x-api-key': `tny_${'0'.repeat(16)}_${'A'.repeat(43)}` },
      });
      expect(byKey.statusCode).toBe(401);
      await expect(env.tenantry.withTenant(tenant.id, async () => 'served')).rejects.toMatchObject({
        code: 'tenant_not_found',
      });
      await expect(env.tenantry.withTenant(tenant.id, async () => 'served')).rejects.toBeInstanceOf(
        TenantryError,
      );
      expect(
        (await env.admin('GET', '/admin/tenants')).json().tenants.map((t: { slug: string }) => t.slug),
      ).not.toContain(slug);
      // It still holds its slug until it is finished or repaired.
      const retry = await env.admin('POST', '/admin/tenants', { name: 'Stuck', slug, isolation: 'schema' });
      expect(retry.statusCode, retry.body).toBe(409);
      await expectFailureAudited(env, tenant, slug);
    } finally {
      await query('DELETE FROM tenantry.tenants WHERE id = $1', [tenant.id]);
      await query(`DROP SCHEMA IF EXISTS ${tenantSchemaName(tenant.id)} CASCADE`);
    }
  });

  it.runIf(driver === 'pglite')('refuses database isolation on the embedded database', async () => {
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Db',
      slug: 'db-tenant',
      isolation: 'database',
    });
    expect(response.statusCode).toBe(400);
    expect(response.json()).toMatchObject({ code: 'validation_failed', field: 'isolation' });
    const rows = await query('SELECT 1 FROM tenantry.tenants WHERE slug = $1', ['db-tenant']);
    expect(rows.rows).toEqual([]);
  });
});

describe.runIf(hasPostgres)('database tenant provisioning on postgres', () => {
  let env: TestEnv;
  let tenantDatabases: string[] = [];

  beforeAll(async () => {
    env = await startTestEnv('postgres', { entities: EXAMPLE_ENTITIES });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    if (!env) return;
    tenantDatabases = await tenantDatabasesOf(env);
    await env.close();
    await dropDatabases(tenantDatabases);
  });

  it('creates the database with every tenant table, forced row-level security and the runtime grants', async () => {
    const tenant = await env.createTenant('database-one', { isolation: 'database' });
    const name = tenantDatabaseName(tenant.id);
    expect(await databaseExists(name)).toBe(true);
    await withTenantDatabase(name, async (client) => {
      const query = (sql: string, params: unknown[]) => client.query(sql, params);
      expect(await tablesOf(query, 'app')).toEqual(TENANT_TABLES);
      expect(await tablesOf(query, 'shared')).toEqual([]);
      expect(await securityOf(query, 'app')).toEqual(
        TENANT_TABLES.map((table) => ({
          table,
          enabled: true,
          forced: true,
          policies: ['tenant_isolation', 'tenant_rows'],
        })),
      );
      const grants = await client.query(
        `SELECT has_table_privilege($1, 'app.projects', 'INSERT') AS writes,
                has_table_privilege($1, 'app.projects', 'TRUNCATE') AS truncates`,
        [RUNTIME_ROLE],
      );
      expect(grants.rows[0]).toEqual({ writes: true, truncates: false });
    });

    const created = await env.inject({
      method: 'POST',
      url: '/api/v1/projects',
      headers: { 'x-api-key': tenant.key },
      payload: { name: 'In its own database' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const stored = await withTenantDatabase(name, (client) => client.query('SELECT name FROM app.projects'));
    expect(stored.rows).toEqual([{ name: 'In its own database' }]);
    const inMain = await env.engine.db.owner.query('SELECT 1 FROM app.projects WHERE tenant_id = $1', [
      tenant.id,
    ]);
    expect(inMain.rows).toEqual([]);
  });

  it('builds the database without its template when the template cannot be copied (in use, or dropped meanwhile)', async () => {
    await env.createTenant('database-first', { isolation: 'database' });
    const { rows } = await env.engine.db.owner.query<{ name: string }>(
      'SELECT name FROM tenantry.database_templates',
    );
    expect(rows.length).toBeGreaterThan(0);
    // A session open on the template: PostgreSQL refuses to copy a database others are using.
    // (Templates refuse connections; one is let in for the test.)
    const template = rows[0]!.name;
    const allow = (on: boolean) =>
      withServer((client) => client.query(`ALTER DATABASE "${template}" WITH ALLOW_CONNECTIONS ${on}`));
    await allow(true);
    const tenant = await withTenantDatabase(template, () =>
      env.createTenant('database-busy-template', { isolation: 'database' }),
    ).finally(() => allow(false));
    const name = tenantDatabaseName(tenant.id);
    await withTenantDatabase(name, async (client) => {
      expect(await tablesOf((sql, params) => client.query(sql, params), 'app')).toEqual(TENANT_TABLES);
    });
    const created = await env.inject({
      method: 'POST',
      url: '/api/v1/projects',
      headers: { 'x-api-key': tenant.key },
      payload: { name: 'Built without the template' },
    });
    expect(created.statusCode, created.body).toBe(201);
  });

  it('a failure after the database was created answers 503 and drops it', async () => {
    const seen = failAfterProvisioning(env);
    const slug = 'half-database';
    const host = 'half-database.example.com';
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Half',
      slug,
      isolation: 'database',
      hosts: [host],
    });
    expectUnavailable(response);
    const tenant = seen[0]!;
    expect(tenant.isolation).toBe('database');
    await expectNothingLeft(env, tenant, slug);
    await expectFailureAudited(env, tenant, slug);

    vi.restoreAllMocks();
    await expectReusable(env, slug, 'database', host);
  });
});

describe.runIf(hasPostgres)('many database tenants with database.maxTenantConnections: 4', () => {
  const BOUND = 4;
  const COUNT = 12;
  let env: TestEnv;
  let monitor: pg.Client;
  let tenants: { id: string; slug: string; key: string }[] = [];
  let names: string[] = [];

  const openConnections = async (): Promise<number> => {
    const { rows } = await monitor.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE application_name = 'tenantry-tenant' AND datname = ANY($1::text[])`,
      [names],
    );
    return rows[0]!.n;
  };

  beforeAll(async () => {
    env = await startTestEnv('postgres', {
      entities: EXAMPLE_ENTITIES,
      database: { maxTenantConnections: BOUND },
    });
    monitor = new pg.Client({ connectionString: env.databaseUrl });
    await monitor.connect();
    tenants = [];
    for (let index = 0; index < COUNT; index += 1) {
      const tenant = await env.createTenant(`many-${index}`, { isolation: 'database' });
      tenants.push(tenant);
      names.push(tenantDatabaseName(tenant.id));
      expect(await openConnections(), `after provisioning ${index + 1} databases`).toBeLessThanOrEqual(BOUND);
    }
  });
  afterAll(async () => {
    await monitor?.end();
    if (!env) return;
    names = await tenantDatabasesOf(env);
    await env.close();
    await dropDatabases(names);
  });

  it('each tenant serves requests one after the other, within the bound', async () => {
    let highest = 0;
    for (const tenant of tenants) {
      const created = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: { 'x-api-key': tenant.key },
        payload: { name: `Project of ${tenant.slug}` },
      });
      expect(created.statusCode, created.body).toBe(201);
      highest = Math.max(highest, await openConnections());
    }
    for (const tenant of tenants) {
      const listed = await env.inject({ url: '/api/v1/projects', headers: { 'x-api-key': tenant.key } });
      expect(listed.statusCode, listed.body).toBe(200);
      expect(listed.json().items.map((item: { name: string }) => item.name)).toEqual([
        `Project of ${tenant.slug}`,
      ]);
      highest = Math.max(highest, await openConnections());
    }
    expect(highest).toBeGreaterThan(0);
    expect(highest).toBeLessThanOrEqual(BOUND);
  });

  it('all tenants serve requests at once, all answered, within the bound', async () => {
    let highest = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        highest = Math.max(highest, await openConnections());
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
    })();
    try {
      for (let round = 0; round < 3; round += 1) {
        const responses = await Promise.all(
          tenants.map((tenant) =>
            env.inject({ url: '/api/v1/projects', headers: { 'x-api-key': tenant.key } }),
          ),
        );
        expect
          .soft(
            responses.map((response) => `${response.statusCode} ${response.json().code ?? ''}`.trim()),
            `round ${round}`,
          )
          .toEqual(tenants.map(() => '200'));
        responses.forEach((response, index) => {
          if (response.statusCode !== 200) return;
          expect(response.json().items.map((item: { name: string }) => item.name)).toEqual([
            `Project of ${tenants[index]!.slug}`,
          ]);
        });
      }
    } finally {
      sampling = false;
      await sampler;
    }
    highest = Math.max(highest, await openConnections());
    expect(highest).toBeLessThanOrEqual(BOUND);
  });
});

describe.runIf(hasPostgres)('a database tenant with database.connectionsPerTenantDatabase: 3', () => {
  let env: TestEnv;
  let monitor: pg.Client;
  let tenant: { id: string };
  let names: string[] = [];

  beforeAll(async () => {
    env = await startTestEnv('postgres', {
      entities: EXAMPLE_ENTITIES,
      database: { maxTenantConnections: 6, connectionsPerTenantDatabase: 3 },
    });
    monitor = new pg.Client({ connectionString: env.databaseUrl });
    await monitor.connect();
    tenant = await env.createTenant('wide-pool', { isolation: 'database' });
  });
  afterAll(async () => {
    await monitor?.end();
    if (!env) return;
    names = await tenantDatabasesOf(env);
    await env.close();
    await dropDatabases(names);
  });

  it('runs up to that many statements at once, and no more', async () => {
    const busy = async (): Promise<number> => {
      const { rows } = await monitor.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = $1 AND query LIKE '%pg_sleep(0.4)%' AND state = 'active'`,
        [tenantDatabaseName(tenant.id)],
      );
      return rows[0]!.n;
    };
    let highest = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        highest = Math.max(highest, await busy());
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    try {
      await Promise.all(
        Array.from({ length: 5 }, () =>
          env.tenantry.withTenant(tenant.id, (db) => db.query('SELECT pg_sleep(0.4)')),
        ),
      );
    } finally {
      sampling = false;
      await sampler;
    }
    expect(highest).toBe(3);
  });
});
