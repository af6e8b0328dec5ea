import { afterAll, describe, expect, it } from 'vitest';
import type { Database, TenantSettings } from '../../src/db/database.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { POSTGRES_SERVER_URL, postgresAvailable } from '../helpers/postgres.js';

const POSTGRES = await postgresAvailable();

// The statement itself runs on the connection it inspects, inside its own tenant pipeline.
const OURS = `SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'tenantry\\_%'`;
const settings: TenantSettings = {
  role: 'postgres',
  tenantId: '00000000-0000-0000-0000-000000000001',
  searchPath: '"public"',
  statementTimeoutMs: 5_000,
};

describe.runIf(POSTGRES)('prepared tenant statements on PostgreSQL', () => {
  const opened: Database[] = [];
  const open = async (statementCacheSize?: number) => {
    const db = await openPostgres({
      url: POSTGRES_SERVER_URL,
      maxConnections: 1,
      ...(statementCacheSize === undefined ? {} : { statementCacheSize }),
    });
    opened.push(db);
    return db;
  };
  afterAll(async () => {
    for (const db of opened) await db.close();
  });

  it('prepares the settings and the statement by default, once per connection', async () => {
    const db = await open();
    const counts: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      counts.push((await db.runtime.scopedQuery<{ n: number }>(settings, OURS)).rows[0]!.n);
    }
    // Parsed before it ran: the settings statement and this one, and no more on later runs.
    expect(counts).toEqual([2, 2, 2]);
  });

  it('prepares nothing with statementCacheSize 0 (for poolers that cannot hold statements)', async () => {
    const db = await open(0);
    for (let i = 0; i < 2; i += 1) {
      expect((await db.runtime.scopedQuery<{ n: number }>(settings, OURS)).rows[0]!.n).toBe(0);
    }
  });
});
