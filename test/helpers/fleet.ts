import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import YAML from 'yaml';
import type { TenantryConfig } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import type { Row } from '../../src/db/database.js';
import { openDatabase } from '../../src/engine/open-database.js';
import { type CliResult, runCli } from './cli.js';
import { exampleDeclaration } from './entities.js';
import type { TestDriver } from './harness.js';
import { ADMIN_TOKEN } from './harness.js';
import { createDatabase, databaseUrl, withServer } from './postgres.js';

export type Declarations = Record<string, { scope: string; fields: Record<string, Record<string, unknown>> }>;

/** Entities A: the declaration the fleet starts from (the example, without a few fields). */
export function entitiesA(): Declarations {
  const entities: Declarations = exampleDeclaration();
  for (const field of ['done', 'due', 'meta']) delete entities.tasks!.fields[field];
  delete entities.countries!.fields.name;
  return entities;
}

/** A: plus tasks.priority (indexed, with a default) and tasks.notes (searched). */
export function entitiesB(): Declarations {
  const entities = entitiesA();
  entities.tasks!.fields.priority = { type: 'integer', default: 3, index: true };
  entities.tasks!.fields.notes = { type: 'text', search: true };
  return entities;
}

export interface CreatedTenant {
  readonly id: string;
  readonly slug: string;
  readonly key: string;
}

/**
 * A deployment driven through the CLI the way an operator does it: config files in a temporary
 * directory, one database (embedded or a fresh PostgreSQL one), and direct SQL for assertions.
 */
export class FleetFixture {
  readonly dir = mkdtempSync(join(tmpdir(), 'tenantry-fleet-'));
  env: Record<string, string | undefined> = {};
  databaseName: string | undefined;
  #drop: (() => Promise<void>) | undefined;

  constructor(readonly driver: TestDriver) {}

  async start(): Promise<this> {
    if (this.driver === 'postgres') {
      const database = await createDatabase();
      this.databaseName = database.name;
      this.env = { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
      this.#drop = database.drop;
    } else {
      this.env = { TENANTRY_DATA_DIR: join(this.dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
    }
    return this;
  }

  writeConfig(name: string, entities: Declarations, extra: Record<string, unknown> = {}): string {
    const path = join(this.dir, `${name}.yaml`);
    writeFileSync(
      path,
      YAML.stringify({ server: { host: '127.0.0.1', baseDomain: 'localhost' }, entities, ...extra }),
    );
    return path;
  }

  config(path: string): TenantryConfig {
    return loadConfig({ file: path, env: this.env, overrides: { port: 0 } });
  }

  cli(args: string[], configPath: string): Promise<CliResult> {
    return runCli(args, { ...this.env, TENANTRY_CONFIG: configPath });
  }

  async createTenant(configPath: string, slug: string, isolation: string, ...extra: string[]) {
    const result = await this.cli(
      ['tenants', 'create', `Tenant ${slug}`, slug, '--isolation', isolation, '--json', ...extra],
      configPath,
    );
    if (result.code !== 0) throw new Error(`create ${slug}: ${result.stderr}`);
    const body = JSON.parse(result.stdout) as {
      tenant: { id: string; slug: string };
      apiKey: { key: string };
    };
    return { id: body.tenant.id, slug: body.tenant.slug, key: body.apiKey.key };
  }

  /** Runs SQL as the owner on the control-plane database (the embedded one is opened briefly). */
  async sql<R extends Row = Row>(query: string, params: unknown[] = []): Promise<R[]> {
    const db = await openDatabase(this.config(this.writeConfig('sql', entitiesA())));
    try {
      return (await db.owner.query<R>(query, params)).rows;
    } finally {
      await db.close();
    }
  }

  /** Runs SQL in a tenant database (PostgreSQL). */
  async sqlIn<R extends pg.QueryResultRow>(
    database: string,
    query: string,
    params: unknown[] = [],
  ): Promise<R[]> {
    const client = new pg.Client({ connectionString: databaseUrl(database) });
    await client.connect();
    try {
      return (await client.query<R>(query, params)).rows;
    } finally {
      await client.end();
    }
  }

  async columns(schema: string, table: string, database?: string): Promise<string[]> {
    const query = `SELECT column_name AS name FROM information_schema.columns
                    WHERE table_schema = $1 AND table_name = $2 ORDER BY column_name`;
    const rows = database
      ? await this.sqlIn<{ name: string }>(database, query, [schema, table])
      : await this.sql<{ name: string }>(query, [schema, table]);
    return rows.map((row) => row.name);
  }

  async versions(): Promise<Map<string, number | null>> {
    const rows = await this.sql<{ slug: string; schema_version: number | null }>(
      'SELECT slug, schema_version FROM tenantry.tenants',
    );
    return new Map(rows.map((row) => [row.slug, row.schema_version]));
  }

  async close(): Promise<void> {
    if (this.driver === 'postgres' && this.databaseName) {
      const leftovers = await this.sql<{ name: string }>(
        `SELECT 'tenantry_' || replace(id::text, '-', '') AS name FROM tenantry.tenants WHERE isolation = 'database'
         UNION ALL SELECT name FROM tenantry.database_templates`,
      ).catch(() => []);
      await this.#drop?.();
      await withServer(async (client) => {
        for (const { name } of leftovers)
          await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      });
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
