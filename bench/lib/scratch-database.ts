import pg from 'pg';

export interface ScratchDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

/** The server holding the scratch databases; BENCH_PG_URL overrides the local default. */
const SERVER_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

const live = new Set<ScratchDatabase>();

/** Drops every scratch database still alive (Ctrl-C). */
export async function dropAllScratchDatabases(): Promise<void> {
  for (const database of [...live]) await database.drop().catch(() => undefined);
}

/** Creates an empty database `tenantry_bench_<pid>_<n>`; `drop` removes it, connections and all. */
export async function createScratchDatabase(suffix: string): Promise<ScratchDatabase> {
  const name = `tenantry_bench_${process.pid}_${suffix}`;
  if (!/^[a-z0-9_]+$/.test(name)) throw new Error(`bad scratch database name ${name}`);
  await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await onServer(`CREATE DATABASE ${name}`);
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  const database: ScratchDatabase = {
    name,
    url: url.toString(),
    async drop() {
      if (!live.delete(database)) return;
      await onServer(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
  live.add(database);
  return database;
}
