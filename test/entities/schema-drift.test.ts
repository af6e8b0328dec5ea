import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { TenantryConfig } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { SchemaDriftError } from '../../src/entities/entity-schema.js';
import { tenantDatabaseName, tenantSchemaName } from '../../src/isolation/tenant-placement.js';
import { startServer } from '../../src/server.js';
import { Tenantry } from '../../src/tenantry.js';
import { runCli } from '../helpers/cli.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase, databaseUrl, withServer } from '../helpers/postgres.js';
import { spawnCliWithin } from '../helpers/spawn-within.js';

async function withDatabase(name: string, fn: (client: pg.Client) => Promise<void>): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl(name) });
  await client.connect();
  try {
    await fn(client);
  } finally {
    await client.end();
  }
}

type Declarations = Record<string, { scope: string; fields: Record<string, Record<string, unknown>> }>;

/** Entities A: what the tables were built from. */
function entitiesA(): Declarations {
  return {
    projects: {
      scope: 'tenant',
      fields: {
        name: { type: 'text', required: true, unique: true },
        status: { type: 'enum', values: ['active', 'archived'], default: 'active' },
      },
    },
    tasks: {
      scope: 'tenant',
      fields: {
        project: { type: 'ref', to: 'projects', required: true, onDelete: 'cascade' },
        title: { type: 'text', required: true, search: true },
        estimate: { type: 'number' },
      },
    },
    countries: {
      scope: 'shared',
      fields: { code: { type: 'text', required: true, unique: true } },
    },
  };
}

const ROW = 'schema app (row tenants)';

interface Drift {
  readonly name: string;
  readonly entities: () => Declarations;
  /** The differences expected in the row-level schema and in every schema tenant's schema. */
  readonly tenantDifferences: readonly string[];
  readonly sharedDifferences?: readonly string[];
}

const DRIFTS: readonly Drift[] = [
  {
    name: 'a field added',
    entities: () => {
      const entities = entitiesA();
      entities.projects!.fields.budget = { type: 'number' };
      return entities;
    },
    tenantDifferences: ['entity "projects" field "budget" is missing from the table'],
  },
  {
    name: 'an entity removed',
    entities: () => {
      const { tasks: _removed, ...rest } = entitiesA();
      return rest;
    },
    tenantDifferences: ['table "tasks" belongs to no declared entity'],
  },
  {
    name: 'a type changed',
    entities: () => {
      const entities = entitiesA();
      entities.tasks!.fields.estimate = { type: 'integer' };
      return entities;
    },
    tenantDifferences: ['entity "tasks" field "estimate" is double precision in the table, declared bigint'],
  },
  {
    name: 'a shared entity removed and a field made required',
    entities: () => {
      const { countries: _removed, ...rest } = entitiesA();
      rest.tasks!.fields.estimate = { type: 'number', required: true };
      return rest;
    },
    tenantDifferences: ['entity "tasks" field "estimate" is optional in the table, declared required'],
    sharedDifferences: ['schema shared: table "countries" belongs to no declared entity'],
  },
];

describe.each(DRIVERS)('declared entities that drifted from the tables, on %s', (driver) => {
  let dir: string;
  let env: Record<string, string | undefined>;
  let cleanup: () => Promise<void>;
  let configA: string;
  let rowTenant: { id: string; slug: string; key: string };
  let schemaTenant: { id: string; slug: string; key: string };
  const tenantDatabases: string[] = [];

  const writeConfig = (name: string, entities: Declarations): string => {
    const path = join(dir, `${name}.yaml`);
    writeFileSync(path, YAML.stringify({ server: { host: '127.0.0.1', baseDomain: 'localhost' }, entities }));
    return path;
  };
  const configOf = (path: string): TenantryConfig => loadConfig({ file: path, env, overrides: { port: 0 } });
  const cli = (args: string[], path: string) => runCli(args, { ...env, TENANTRY_CONFIG: path });
  const expectedFor = (drift: Drift): string[] => [
    ...[ROW, `schema ${tenantSchemaName(schemaTenant.id)}`].flatMap((where) =>
      drift.tenantDifferences.map((difference) => `${where}: ${difference}`),
    ),
    ...(drift.sharedDifferences ?? []),
  ];
  const openError = async (config: TenantryConfig): Promise<unknown> =>
    Tenantry.open({ config, verifyEntities: true }).then(
      async (tenantry) => {
        await tenantry.close();
        return undefined;
      },
      (error: unknown) => error,
    );

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-drift-'));
    if (driver === 'postgres') {
      const database = await createDatabase();
      env = { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
      cleanup = async () => {
        await database.drop();
        await withServer(async (client) => {
          for (const name of tenantDatabases)
            await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        });
        rmSync(dir, { recursive: true, force: true });
      };
    } else {
      env = { TENANTRY_DATA_DIR: join(dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
      cleanup = async () => rmSync(dir, { recursive: true, force: true });
    }
    configA = writeConfig('entities-a', entitiesA());
    const create = async (slug: string, isolation: string) => {
      const result = await cli(
        ['tenants', 'create', `Tenant ${slug}`, slug, '--isolation', isolation, '--json'],
        configA,
      );
      expect(result.code, result.stderr).toBe(0);
      const body = JSON.parse(result.stdout) as {
        tenant: { id: string; slug: string };
        apiKey: { key: string };
      };
      return { id: body.tenant.id, slug: body.tenant.slug, key: body.apiKey.key };
    };
    rowTenant = await create('row-tenant', 'row');
    schemaTenant = await create('schema-tenant', 'schema');
  });
  afterAll(async () => {
    await cleanup?.();
  });

  it('opens and serves with the entities the tables were built from', async () => {
    const tenantry = await Tenantry.open({ config: configOf(configA), verifyEntities: true });
    await tenantry.close();
  });

  describe.each(DRIFTS.map((drift) => [drift.name, drift] as const))('with %s', (_name, drift) => {
    let path: string;

    beforeAll(() => {
      path = writeConfig(drift.name.replaceAll(' ', '-'), drift.entities());
    });

    it('Tenantry.open({ verifyEntities: true }) refuses with SchemaDriftError naming entity and difference', async () => {
      const error = await openError(configOf(path));
      expect(error).toBeInstanceOf(SchemaDriftError);
      const drifted = error as SchemaDriftError;
      expect([...drifted.differences].sort()).toEqual(expectedFor(drift).sort());
      for (const difference of expectedFor(drift)) expect(drifted.message).toContain(difference);
    });

    it('startServer refuses with SchemaDriftError and leaves the database usable', async () => {
      const error = await startServer({
        config: configOf(path),
        notice: () => undefined,
        logger: false,
      }).then(
        async (server) => {
          await server.close();
          return undefined;
        },
        (thrown: unknown) => thrown,
      );
      expect(error).toBeInstanceOf(SchemaDriftError);
      expect((error as SchemaDriftError).differences).toEqual(expect.arrayContaining(expectedFor(drift)));
      // Nothing was left holding the database (the embedded one is single-process).
      const list = await cli(['tenants', 'list', '--json'], configA);
      expect(list.code, list.stderr).toBe(0);
    });

    it('tenantry serve exits 2 by itself with the difference on stderr', async () => {
      const result = await spawnCliWithin(
        ['serve', '--port', '0'],
        { ...env, TENANTRY_CONFIG: path, LOG_LEVEL: 'warn' },
        30_000,
      );
      expect(result.timedOut, `still running after ${result.ms} ms:\n${result.stderr}`).toBe(false);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('schema error: the declared entities do not match the database');
      for (const difference of expectedFor(drift)) expect(result.stderr).toContain(difference);
      expect(result.stderr).not.toContain('listening');
    });

    it('operator commands still work with the drifted config', async () => {
      const list = await cli(['tenants', 'list', '--json'], path);
      expect(list.code, list.stderr).toBe(0);
      const slugs = (JSON.parse(list.stdout) as { slug: string }[]).map((tenant) => tenant.slug);
      expect(slugs).toEqual(expect.arrayContaining([rowTenant.slug, schemaTenant.slug]));
      const shown = await cli(['tenants', 'show', schemaTenant.slug, '--json'], path);
      expect(shown.code, shown.stderr).toBe(0);
      expect(JSON.parse(shown.stdout)).toMatchObject({
        id: schemaTenant.id,
        isolation: 'schema',
        status: 'active',
      });
    });
  });

  it('names a schema tenant whose own tables were changed behind its back', async () => {
    const schema = tenantSchemaName(schemaTenant.id);
    const owner = await Tenantry.open({ config: configOf(configA) });
    try {
      await owner.db.owner.query(`ALTER TABLE ${schema}.projects ADD COLUMN sneaky text`);
    } finally {
      await owner.close();
    }
    try {
      const error = await openError(configOf(configA));
      expect(error).toBeInstanceOf(SchemaDriftError);
      expect((error as SchemaDriftError).differences).toEqual([
        `schema ${schema}: table of "projects" has column "sneaky" that is not declared`,
      ]);
    } finally {
      const repair = await Tenantry.open({ config: configOf(configA) });
      await repair.db.owner.query(`ALTER TABLE ${schema}.projects DROP COLUMN sneaky`);
      await repair.close();
    }
  });

  // `serve` must never serve a mismatched schema; database tenants keep their tables elsewhere.
  it.runIf(driver === 'postgres')(
    'names a database tenant whose own tables were changed behind its back',
    async () => {
      const created = await cli(
        ['tenants', 'create', 'Database Co', 'database-tenant', '--isolation', 'database', '--json'],
        configA,
      );
      expect(created.code, created.stderr).toBe(0);
      const id = (JSON.parse(created.stdout) as { tenant: { id: string } }).tenant.id;
      const database = tenantDatabaseName(id);
      tenantDatabases.push(database);
      const alter = (sql: string) =>
        withDatabase(database, async (client) => {
          await client.query(sql);
        });
      await alter('ALTER TABLE app.projects ADD COLUMN sneaky text');
      try {
        const error = await openError(configOf(configA));
        expect(error).toBeInstanceOf(SchemaDriftError);
        expect((error as SchemaDriftError).differences).toEqual([
          `database ${database}: table of "projects" has column "sneaky" that is not declared`,
        ]);
      } finally {
        await alter('ALTER TABLE app.projects DROP COLUMN sneaky');
      }
    },
  );

  it('serves again once the previous entities are restored: the drifted runs changed no table', async () => {
    const server = await startServer({ config: configOf(configA), notice: () => undefined, logger: false });
    try {
      for (const tenant of [rowTenant, schemaTenant]) {
        const created = await server.app.inject({
          method: 'POST',
          url: '/api/v1/projects',
          headers: { 'x-api-key': tenant.key },
          payload: { name: `Project of ${tenant.slug}` },
        });
        expect(created.statusCode, created.body).toBe(201);
        const listed = await server.app.inject({
          url: '/api/v1/projects',
          headers: { 'x-api-key': tenant.key },
        });
        expect(listed.json().items.map((item: { name: string }) => item.name)).toEqual([
          `Project of ${tenant.slug}`,
        ]);
      }
    } finally {
      await server.close();
    }
  });
});
