import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { IN_CI } from './ci.js';

export const POSTGRES_SERVER_URL =
  process.env.TENANTRY_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/**
 * Each vitest run has its own template and database names (keyed by the run's process id), so
 * two runs on one server never drop each other's databases; a run's leftovers are removed by a
 * later run once its process is gone.
 */
export const RUN_ID = process.env.TENANTRY_TEST_RUN ?? String(process.pid);
export const TEMPLATE_DATABASE = `tenantry_tpl_${RUN_ID}`;
export const TEST_DATABASE_PREFIX = `tenantry_t_${RUN_ID}_`;

export function databaseUrl(name: string): string {
  const url = new URL(POSTGRES_SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Whether the PostgreSQL suites run. In CI (see IN_CI) an unreachable server is a failure, never
 * a silent skip: the isolation claims are about real PostgreSQL.
 */
export async function postgresAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: POSTGRES_SERVER_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch (error) {
    if (IN_CI) {
      throw new Error(
        `CI=${process.env.CI} but PostgreSQL at ${POSTGRES_SERVER_URL} does not answer: ${String(error)}`,
      );
    }
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function withServer<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: POSTGRES_SERVER_URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A fresh database cloned from the migrated template; drop it when done. */
export async function createDatabase(options: { template?: string | null } = {}): Promise<{
  name: string;
  url: string;
  drop: () => Promise<void>;
}> {
  const name = `${TEST_DATABASE_PREFIX}${randomBytes(6).toString('hex')}`;
  const template = options.template === undefined ? TEMPLATE_DATABASE : options.template;
  await withServer((client) =>
    client.query(`CREATE DATABASE ${name}${template ? ` TEMPLATE ${pg.escapeIdentifier(template)}` : ''}`),
  );
  return {
    name,
    url: databaseUrl(name),
    drop: () =>
      withServer((client) => client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(
        () => undefined,
      ),
  };
}
