import pg from 'pg';
import { migrateControlPlane } from '../../src/db/migrator.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { IN_CI } from './ci.js';
import {
  databaseUrl,
  POSTGRES_SERVER_URL,
  postgresAvailable,
  RUN_ID,
  TEMPLATE_DATABASE,
  withServer,
} from './postgres.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists, under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A run's template (`tenantry_tpl_<pid>`) and per-file databases (`tenantry_t_<pid>_<hex>`). */
const RUN_DATABASE = /^tenantry_(?:tpl|t)_(\d+)/;
/** What tests make on the server besides their own databases: tenant databases and their templates. */
const TENANT_DATABASE = /^tenantry_(?:[0-9a-f]{32}|template_[0-9a-f]{16})$/;

async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
}

/**
 * The tenant databases and templates a database records (none when it is not a tenantry
 * database), or undefined when it cannot be read.
 */
async function recordedIn(name: string): Promise<Set<string> | undefined> {
  const client = new pg.Client({ connectionString: databaseUrl(name), connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows: tables } = await client.query<{ tenants: string | null; templates: string | null }>(
      "SELECT to_regclass('tenantry.tenants') AS tenants, to_regclass('tenantry.database_templates') AS templates",
    );
    const recorded = new Set<string>();
    if (tables[0]?.tenants) {
      const { rows } = await client.query<{ name: string }>(
        "SELECT 'tenantry_' || replace(id::text, '-', '') AS name FROM tenantry.tenants WHERE isolation = 'database'",
      );
      for (const row of rows) recorded.add(row.name);
    }
    if (tables[0]?.templates) {
      const { rows } = await client.query<{ name: string }>('SELECT name FROM tenantry.database_templates');
      for (const row of rows) recorded.add(row.name);
    }
    return recorded;
  } catch {
    return undefined;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Removes what runs whose process is gone left on the server (a killed run never reaches its
 * teardown). In this order, so that no live run ever loses a database it uses:
 *
 * 1. A dead run's per-file databases, each with the tenant databases and templates it records.
 *    Tenant ids are random UUIDs, so what a dead run's database records belongs to no one else.
 * 2. Then its template database.
 * 3. Tenant databases and templates nobody records (their run died before recording them, or an
 *    earlier clean-up dropped the database that did): only while no other run is alive, since a
 *    live run creates a tenant's database before the row that records it commits; and only those
 *    that no database on the server records, so a tenantry deployment sharing the server keeps
 *    its own. If some database cannot be read, nothing is dropped at this step.
 */
async function dropLeftovers(client: pg.Client): Promise<void> {
  // Templates refuse connections (ALLOW_CONNECTIONS false): listed all the same.
  const names = async () =>
    (
      await client.query<{ datname: string }>(
        'SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname',
      )
    ).rows.map((row) => row.datname);
  const runOf = (name: string) => RUN_DATABASE.exec(name)?.[1];
  const otherRun = (name: string) => {
    const run = runOf(name);
    return run !== undefined && run !== RUN_ID;
  };
  const dead = (await names()).filter((name) => otherRun(name) && !alive(Number(runOf(name))));
  const isTemplate = (name: string) => Number(name.startsWith('tenantry_tpl_'));
  for (const name of dead.sort((x, y) => isTemplate(x) - isTemplate(y))) {
    for (const recorded of (await recordedIn(name)) ?? []) {
      if (TENANT_DATABASE.test(recorded)) await dropDatabase(client, recorded);
    }
    await dropDatabase(client, name);
  }

  const remaining = await names();
  if (remaining.some(otherRun)) return;
  const recorded = new Set<string>();
  for (const name of remaining.filter((candidate) => !TENANT_DATABASE.test(candidate))) {
    const found = await recordedIn(name);
    if (!found) return;
    for (const entry of found) recorded.add(entry);
  }
  for (const name of remaining) {
    if (TENANT_DATABASE.test(name) && !recorded.has(name)) await dropDatabase(client, name);
  }
}

/** Builds this run's migrated template database once; every PostgreSQL test file clones it. */
export async function setup(): Promise<void> {
  // Workers inherit the environment: they must name the databases after this (the main) process.
  process.env.TENANTRY_TEST_RUN = RUN_ID;
  if (!(await postgresAvailable())) {
    console.log(
      `PostgreSQL at ${POSTGRES_SERVER_URL} does not answer: the suites run on PGlite only${IN_CI ? '' : ' (in CI this fails)'}`,
    );
    return;
  }
  console.log(`The suites run on PGlite and on PostgreSQL at ${POSTGRES_SERVER_URL}`);
  await withServer(async (client) => {
    await dropLeftovers(client);
    await dropDatabase(client, TEMPLATE_DATABASE);
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(TEMPLATE_DATABASE)}`);
  });
  const db = await openPostgres({ url: databaseUrl(TEMPLATE_DATABASE), maxConnections: 2 });
  try {
    await migrateControlPlane(db.owner);
  } finally {
    await db.close();
  }
}

export async function teardown(): Promise<void> {
  if (!(await postgresAvailable().catch(() => false))) return;
  await withServer((client) => dropDatabase(client, TEMPLATE_DATABASE));
}
