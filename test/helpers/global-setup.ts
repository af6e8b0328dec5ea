import pg from 'pg';
import { migrateControlPlane } from '../../src/db/migrator.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { databaseUrl, postgresAvailable, TEMPLATE_DATABASE, withServer } from './postgres.js';

/** Builds the migrated template database once per run; every PostgreSQL test file clones it. */
export async function setup(): Promise<void> {
  if (!(await postgresAvailable())) return;
  await withServer(async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${TEMPLATE_DATABASE} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(TEMPLATE_DATABASE)}`);
  });
  const db = await openPostgres({ url: databaseUrl(TEMPLATE_DATABASE), maxConnections: 2 });
  try {
    await migrateControlPlane(db.owner);
  } finally {
    await db.close();
  }
  // Leftovers of runs that were killed before their cleanup.
  await withServer(async (client) => {
    const { rows } = await client.query<{ datname: string }>(
      "SELECT datname FROM pg_database WHERE datname LIKE 'tenantry\\_t\\_%'",
    );
    for (const row of rows)
      await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(row.datname)} WITH (FORCE)`);
  });
}
