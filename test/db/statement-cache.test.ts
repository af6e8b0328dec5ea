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

  it('opens a tenant transaction in one round trip: BEGIN and the settings pipelined', async () => {
    const db = await open();
    const pool = (db.runtime as unknown as { pool: import('pg').Pool }).pool;
    let roundTrips = 0;
    const counting = (client: import('pg').PoolClient) => {
      (client as unknown as { connection: NodeJS.EventEmitter }).connection.on('readyForQuery', () => {
        roundTrips += 1;
      });
    };
    pool.on('connect', counting);
    // Connect (and count from) a fresh client.
    await db.runtime.query('SELECT 1');
    roundTrips = 0;
    const inside = await db.runtime.scopedTransaction(settings, async (tx) => {
      const { rows } = await tx.query<{ tenant: string; role: string }>(
        `SELECT current_setting('tenantry.tenant_id') AS tenant, current_user AS role`,
      );
      return rows[0];
    });
    expect(inside).toEqual({ tenant: settings.tenantId, role: 'postgres' });
    // BEGIN + settings, the statement, COMMIT.
    expect(roundTrips).toBe(3);
    // Transaction-local settings end with it.
    const after = await db.runtime.query<{ tenant: string | null }>(
      `SELECT current_setting('tenantry.tenant_id', true) AS tenant`,
    );
    expect(after.rows[0]?.tenant ?? '').toBe('');
  });

  it('rolls a tenant transaction back when its function fails, and the connection serves on', async () => {
    const db = await open();
    const table = `tenantry_tx_probe_${process.pid}`;
    await db.owner.query(`CREATE TABLE IF NOT EXISTS ${table} (id int)`);
    try {
      await expect(
        db.runtime.scopedTransaction(settings, async (tx) => {
          await tx.query(`INSERT INTO ${table} VALUES (1)`);
          throw new Error('changed my mind');
        }),
      ).rejects.toThrow('changed my mind');
      expect((await db.runtime.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]).toEqual({ n: 0 });
      const { rows } = await db.runtime.scopedTransaction(settings, (tx) =>
        tx.query<{ tenant: string }>(`SELECT current_setting('tenantry.tenant_id') AS tenant`),
      );
      expect(rows[0]?.tenant).toBe(settings.tenantId);
    } finally {
      await db.owner.query(`DROP TABLE ${table}`);
    }
  });

  it('prepares nothing with statementCacheSize 0 (for poolers that cannot hold statements)', async () => {
    const db = await open(0);
    for (let i = 0; i < 2; i += 1) {
      expect((await db.runtime.scopedQuery<{ n: number }>(settings, OURS)).rows[0]!.n).toBe(0);
    }
  });
});
