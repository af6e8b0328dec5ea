import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOCK_NAMESPACE, LockKey } from '../../src/db/advisory-locks.js';
import { tenantDatabaseName, tenantSchemaName } from '../../src/isolation/tenant-placement.js';
import { startServer } from '../../src/server.js';
import {
  type CreatedTenant,
  type Declarations,
  entitiesA,
  entitiesB,
  FleetFixture,
} from '../helpers/fleet.js';
import { DRIVERS } from '../helpers/harness.js';

interface Report {
  targetVersion: number;
  total: number;
  migrated: number;
  failed: { unit: string; tenantId: string | null; error: string }[];
  remaining: number;
  upToDate: number;
  canary: boolean;
}

describe.each(DRIVERS)('tenantry migrate over a fleet, on %s', (driver) => {
  const fleet = new FleetFixture(driver);
  let configA: string;
  let configB: string;
  const schemaTenants: CreatedTenant[] = [];
  let rowTenant: CreatedTenant;
  let databaseTenant: CreatedTenant | undefined;

  const migrate = async (config: string, ...args: string[]) => {
    const result = await fleet.cli(['migrate', '--json', ...args], config);
    return {
      ...result,
      report: result.code <= 1 && result.stdout ? (JSON.parse(result.stdout) as Report) : undefined,
    };
  };
  const ownTenants = () => [...schemaTenants, ...(databaseTenant ? [databaseTenant] : [])];
  const tasksColumns = (tenant: CreatedTenant) =>
    databaseTenant && tenant.id === databaseTenant.id
      ? fleet.columns('app', 'tasks', tenantDatabaseName(tenant.id))
      : fleet.columns(tenantSchemaName(tenant.id), 'tasks');

  beforeAll(async () => {
    await fleet.start();
    configA = fleet.writeConfig('a', entitiesA());
    configB = fleet.writeConfig('b', entitiesB());
    // Only init-db and serve create the embedded database.
    expect((await fleet.cli(['init-db'], configA)).code).toBe(0);
    for (const slug of ['schema-one', 'schema-two', 'schema-three'])
      schemaTenants.push(await fleet.createTenant(configA, slug, 'schema'));
    rowTenant = await fleet.createTenant(configA, 'row-one', 'row');
    if (driver === 'postgres') databaseTenant = await fleet.createTenant(configA, 'database-one', 'database');
  }, 120_000);
  afterAll(async () => {
    await fleet.close();
  });

  it('new tenants record the version of the entities they were built at', async () => {
    const versions = await fleet.versions();
    for (const tenant of [...ownTenants(), rowTenant]) expect(versions.get(tenant.slug)).toBe(1);
  });

  it('a server with new entities serves tenants that are behind for the fields they have', async () => {
    const server = await startServer({
      config: fleet.config(configB),
      notice: () => undefined,
      logger: false,
    });
    try {
      for (const tenant of [schemaTenants[0]!, rowTenant]) {
        const headers = { 'x-api-key': tenant.key };
        const project = await server.app.inject({
          method: 'POST',
          url: '/api/v1/projects',
          headers,
          payload: { name: 'Apollo' },
        });
        expect(project.statusCode, project.body).toBe(201);
        const projectId = project.json().id as string;
        const withNewField = await server.app.inject({
          method: 'POST',
          url: '/api/v1/tasks',
          headers,
          payload: { project: projectId, title: 'Launch', priority: 1 },
        });
        expect(withNewField.statusCode, withNewField.body).toBe(503);
        expect(withNewField.json()).toMatchObject({ code: 'unavailable', field: 'priority' });
        const withOldFields = await server.app.inject({
          method: 'POST',
          url: '/api/v1/tasks',
          headers,
          payload: { project: projectId, title: 'Launch', estimate: 2 },
        });
        expect(withOldFields.statusCode, withOldFields.body).toBe(201);
        expect(withOldFields.json()).not.toHaveProperty('priority');
        const listed = await server.app.inject({ url: '/api/v1/tasks?q=launch', headers });
        expect(listed.statusCode, listed.body).toBe(200);
        expect(listed.json().items).toHaveLength(1);
      }
    } finally {
      await server.close();
    }
  });

  it('--plan prints the SQL per isolation level and changes nothing', async () => {
    const result = await fleet.cli(['migrate', '--plan'], configB);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('target: entity version 2');
    expect(result.stdout).toContain('add field tasks.priority');
    expect(result.stdout).toMatch(/-- row:\n[^-]*ADD COLUMN "priority" bigint DEFAULT 3::bigint/);
    expect(result.stdout).toContain('-- schema:');
    expect(result.stdout).toContain('"t_<tenant id>"."tasks"');
    if (driver === 'postgres') expect(result.stdout).toContain('1 database tenant(s)');
    expect(await fleet.sql('SELECT version FROM tenantry.entity_versions')).toHaveLength(1);
    expect(await tasksColumns(schemaTenants[0]!)).not.toContain('priority');
  });

  it('a tenant whose migration fails is rolled back and reported; the others migrate; a rerun finishes', async () => {
    const broken = schemaTenants[1]!;
    const schema = tenantSchemaName(broken.id);
    // A column in the way: the tenant's second statement fails, after its first one succeeded.
    await fleet.sql(`ALTER TABLE "${schema}".tasks ADD COLUMN notes integer`);
    const first = await migrate(configB, '--concurrency', '2');
    expect(first.code, first.stderr).toBe(1);
    expect(first.report?.failed).toHaveLength(1);
    expect(first.report?.failed[0]).toMatchObject({ tenantId: broken.id });
    expect(first.report?.failed[0]?.error).toMatch(/notes/);
    expect(first.report?.migrated).toBe(first.report!.total - 1);
    const versions = await fleet.versions();
    expect(versions.get(broken.slug)).toBe(1);
    for (const tenant of [...ownTenants(), rowTenant].filter((t) => t !== broken))
      expect(versions.get(tenant.slug), tenant.slug).toBe(2);
    // Rolled back as a whole: not even the statement that succeeded before the failure stayed.
    expect(await tasksColumns(broken)).not.toContain('priority');
    for (const tenant of ownTenants().filter((t) => t !== broken)) {
      expect(await tasksColumns(tenant)).toEqual(expect.arrayContaining(['priority', 'notes', '_search']));
    }
    const [recorded] = await fleet.sql<{ migration_error: string }>(
      'SELECT migration_error FROM tenantry.tenants WHERE id = $1',
      [broken.id],
    );
    expect(recorded?.migration_error).toMatch(/notes/);
    const [audited] = await fleet.sql<{ outcome: string; details: { failed: string[] } }>(
      "SELECT outcome, details FROM tenantry.audit_log WHERE action = 'entities.migrate' ORDER BY id DESC LIMIT 1",
    );
    expect(audited).toMatchObject({ outcome: 'failure', details: { failed: [broken.id] } });

    await fleet.sql(`ALTER TABLE "${schema}".tasks DROP COLUMN notes`);
    const rerun = await migrate(configB);
    expect(rerun.code, rerun.stderr).toBe(0);
    expect(rerun.report).toMatchObject({ total: 1, migrated: 1, failed: [], remaining: 0 });
    expect((await fleet.versions()).get(broken.slug)).toBe(2);
    expect(await tasksColumns(broken)).toEqual(expect.arrayContaining(['priority', 'notes']));
  });

  it('a run with nothing behind touches no tenant', async () => {
    const result = await migrate(configB);
    expect(result.code, result.stderr).toBe(0);
    expect(result.report).toMatchObject({ total: 0, migrated: 0, upToDate: ownTenants().length });
  });

  it('the new fields work once migrated', async () => {
    const server = await startServer({
      config: fleet.config(configB),
      notice: () => undefined,
      logger: false,
    });
    try {
      const headers = { 'x-api-key': schemaTenants[0]!.key };
      const projects = await server.app.inject({ url: '/api/v1/projects', headers });
      const projectId = projects.json().items[0].id as string;
      const created = await server.app.inject({
        method: 'POST',
        url: '/api/v1/tasks',
        headers,
        payload: { project: projectId, title: 'Dock', notes: 'orbital docking', priority: 1 },
      });
      expect(created.statusCode, created.body).toBe(201);
      expect(created.json()).toMatchObject({ priority: 1, notes: 'orbital docking' });
      const old = await server.app.inject({ url: '/api/v1/tasks?title=Launch', headers });
      expect(old.json().items[0]).toMatchObject({ priority: 3, notes: null });
      const found = await server.app.inject({ url: '/api/v1/tasks?q=docking', headers });
      expect(found.json().items.map((task: { title: string }) => task.title)).toEqual(['Dock']);
    } finally {
      await server.close();
    }
  });

  it('a server running older entities refuses tenants migrated past them', async () => {
    const server = await startServer({
      config: fleet.config(configA),
      notice: () => undefined,
      logger: false,
    });
    try {
      for (const tenant of [schemaTenants[0]!, rowTenant]) {
        const response = await server.app.inject({
          url: '/api/v1/projects',
          headers: { 'x-api-key': tenant.key },
        });
        expect(response.statusCode, response.body).toBe(503);
        expect(response.json()).toMatchObject({ code: 'unavailable' });
        expect(response.json().detail).toMatch(/newer deployment/);
      }
    } finally {
      await server.close();
    }
  });

  it('old code creates tenants at its own version, and the next migrate brings them up', async () => {
    const late = await fleet.createTenant(configA, 'schema-late', 'schema');
    expect((await fleet.versions()).get(late.slug)).toBe(1);
    const fresh = await fleet.createTenant(configB, 'schema-fresh', 'schema');
    expect((await fleet.versions()).get(fresh.slug)).toBe(2);
    expect(await fleet.columns(tenantSchemaName(fresh.id), 'tasks')).toContain('priority');
    const result = await migrate(configB);
    expect(result.code, result.stderr).toBe(0);
    expect(result.report).toMatchObject({ total: 1, migrated: 1 });
    schemaTenants.push(late, fresh);
  });

  it('refuses a destructive change without --allow-destructive (exit 2, nothing changed), and applies it with', async () => {
    const entities: Declarations = entitiesB();
    delete entities.tasks!.fields.estimate;
    entities.tasks!.fields.priority = { type: 'text', default: 'normal', index: true };
    const configC = fleet.writeConfig('c', entities);
    const refused = await fleet.cli(['migrate'], configC);
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toContain('tasks.estimate');
    expect(refused.stderr).toContain('"tasks.priority" from bigint to text');
    expect(refused.stderr).toContain('--allow-destructive');
    expect(await fleet.sql('SELECT version FROM tenantry.entity_versions')).toHaveLength(2);
    expect(await tasksColumns(schemaTenants[0]!)).toContain('estimate');

    const plan = await fleet.cli(['migrate', '--plan'], configC);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('! destructive: drop field "tasks.estimate"');
    expect(plan.stdout).toContain('DROP COLUMN "estimate"');

    const applied = await migrate(configC, '--allow-destructive');
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.report?.failed).toEqual([]);
    expect(await tasksColumns(schemaTenants[0]!)).not.toContain('estimate');
    const [priority] = await fleet.sql<{ data_type: string }>(
      `SELECT data_type FROM information_schema.columns WHERE table_schema = 'app' AND table_name = 'tasks' AND column_name = 'priority'`,
    );
    expect(priority?.data_type).toBe('text');
    configB = configC;
  });

  it('refuses a declaration that cannot be migrated, naming entity and field (exit 2)', async () => {
    const required = entitiesB();
    required.tasks!.fields.owner = { type: 'text', required: true };
    const result = await fleet.cli(['migrate'], fleet.writeConfig('required', required));
    expect(result.code, result.stderr).toBe(2);
    expect(result.stderr).toContain('"tasks.owner" is added as required without a default');
    const plan = await fleet.cli(['migrate', '--plan'], fleet.writeConfig('required', required));
    expect(plan.code).toBe(2);
    expect(plan.stderr).toContain('cannot migrate: field "tasks.owner" is added as required');
    // Nor does creating a tenant register such a declaration.
    const created = await fleet.cli(
      ['tenants', 'create', 'Refused', 'refused-tenant', '--isolation', 'schema'],
      fleet.writeConfig('required', required),
    );
    expect(created.code).toBe(1);
    expect(created.stderr).toContain('cannot be migrated from version');

    const dangling = entitiesB();
    dangling.tasks!.fields.milestone = { type: 'ref', to: 'milestones' };
    const refused = await fleet.cli(['migrate'], fleet.writeConfig('dangling', dangling));
    expect(refused.code, refused.stderr).toBe(2);
    expect(refused.stderr).toMatch(/entities\.tasks\.fields\.milestone/);
    expect(refused.stderr).toContain('milestones');

    const rescoped = entitiesB();
    rescoped.countries!.scope = 'tenant';
    const scope = await fleet.cli(['migrate'], fleet.writeConfig('rescoped', rescoped));
    expect(scope.code, scope.stderr).toBe(2);
    expect(scope.stderr).toContain('"countries" cannot change scope');
  });

  it('--canary N migrates N tenants and stops; the next run does the rest', async () => {
    const entities = entitiesB();
    delete entities.tasks!.fields.estimate;
    entities.tasks!.fields.priority = { type: 'text', default: 'normal', index: true };
    entities.projects!.fields.budget = { type: 'number', min: 0 };
    entities.milestones = {
      scope: 'tenant',
      fields: {
        title: { type: 'text', required: true },
        project: { type: 'ref', to: 'projects', required: true, onDelete: 'cascade' },
      },
    };
    const configD = fleet.writeConfig('d', entities);
    const canary = await migrate(configD, '--canary', '1');
    expect(canary.code, canary.stderr).toBe(0);
    expect(canary.report?.canary).toBe(true);
    expect(canary.report?.remaining).toBeGreaterThan(0);
    const versions = await fleet.versions();
    const target = canary.report!.targetVersion;
    const current = ownTenants().filter((tenant) => versions.get(tenant.slug) === target);
    expect(current).toHaveLength(1);
    expect(versions.get(rowTenant.slug)).toBe(target - 1);
    const rest = await migrate(configD);
    expect(rest.code, rest.stderr).toBe(0);
    expect(rest.report?.migrated).toBe(canary.report!.remaining);
    const after = await fleet.versions();
    for (const tenant of [...ownTenants(), rowTenant]) expect(after.get(tenant.slug)).toBe(target);
    expect(await fleet.columns(tenantSchemaName(schemaTenants[0]!.id), 'milestones')).toEqual([
      'created_at',
      'id',
      'project',
      'tenant_id',
      'title',
      'updated_at',
    ]);
    configB = configD;
  });

  it.runIf(driver === 'postgres')(
    'a migrate while another one runs exits with a clear message, or waits with --wait',
    async () => {
      const holder = new pg.Client({ connectionString: `${fleet.env.DATABASE_URL}` });
      await holder.connect();
      try {
        await holder.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, LockKey.FLEET_MIGRATION]);
        const refused = await fleet.cli(['migrate'], configB);
        expect(refused.code, refused.stderr).toBe(1);
        expect(refused.stderr).toContain('another `tenantry migrate` is running');
        const waiting = fleet.cli(['migrate', '--wait'], configB);
        let settled = false;
        void waiting.then(() => {
          settled = true;
        });
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(settled).toBe(false);
        await holder.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, LockKey.FLEET_MIGRATION]);
        const waited = await waiting;
        expect(waited.code, waited.stderr).toBe(0);
      } finally {
        await holder.end();
      }
    },
  );
});
