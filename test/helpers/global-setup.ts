import pg from 'pg';
import { migrateControlPlane } from '../../src/db/migrator.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { databaseUrl, postgresAvailable, RUN_ID, TEMPLATE_DATABASE, withServer } from './postgres.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Databases of earlier runs whose process is gone: templates and per-file databases. */
async function dropLeftovers(client: pg.Client): Promise<void> {
  const { rows } = await client.query<{ datname: string }>(
    "SELECT datname FROM pg_database WHERE datname ~ '^tenantry_(tpl|t)_[0-9]+'",
  );
  for (const { datname } of rows) {
    const pid = Number(/^tenantry_(?:tpl|t)_(\d+)/.exec(datname)?.[1]);
    if (String(pid) !== RUN_ID && !alive(pid)) {
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
    }
  }
}

/** Builds this run's migrated template database once; every PostgreSQL test file clones it. */
export async function setup(): Promise<void> {
  // Workers inherit the environment: they must name the databases after this (the main) process.
  process.env.TENANTRY_TEST_RUN = RUN_ID;
  if (!(await postgresAvailable())) return;
  await withServer(async (client) => {
    await dropLeftovers(client);
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(TEMPLATE_DATABASE)} WITH (FORCE)`);
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
  await withServer((client) =>
    client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(TEMPLATE_DATABASE)} WITH (FORCE)`),
  );
}
