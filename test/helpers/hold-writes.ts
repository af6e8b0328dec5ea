import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

export interface HeldWrites {
  /**
   * Lets the writes go once `ready(waiting)` holds, where `waiting` counts the database's sessions
   * that wait for a lock (a held write, or a lock the code under test takes). Fails, after letting
   * them go, when that is not seen within `deadlineMs`: a test relying on the overlap must not
   * pass without it.
   */
  releaseWhen(ready: (waiting: number) => boolean, deadlineMs?: number): Promise<void>;
}

/**
 * Holds every write to `tables` (INSERT, UPDATE, DELETE wait; reads and row locks go on) from
 * another connection, so that concurrent writers all reach their write before any commits. A
 * protection that makes them take turns (a lock) then shows as writers waiting for it; without
 * one they would all have read the same state before writing.
 *
 * @example
 * const held = await holdWrites(env.databaseUrl!, ['tenantry.api_keys']);
 * const creating = Promise.all([create(), create()]);
 * await held.releaseWhen((waiting) => waiting >= 2);
 */
export async function holdWrites(url: string, tables: readonly string[]): Promise<HeldWrites> {
  const client = new pg.Client({ connectionString: url, application_name: 'tenantry-test-hold' });
  await client.connect();
  await client.query('BEGIN');
  await client.query(`LOCK TABLE ${tables.join(', ')} IN SHARE MODE`);
  return {
    async releaseWhen(ready, deadlineMs = 20_000): Promise<void> {
      const deadline = Date.now() + deadlineMs;
      let waiting = 0;
      try {
        while (Date.now() < deadline) {
          // Within a transaction, pg_stat_activity keeps its first snapshot unless it is cleared.
          await client.query('SELECT pg_stat_clear_snapshot()');
          const { rows } = await client.query<{ count: number }>(
            `SELECT count(*)::int AS count FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'`,
          );
          waiting = rows[0]?.count ?? 0;
          if (ready(waiting)) return;
          await sleep(25);
        }
        const { rows } = await client.query<{ session: string }>(
          `SELECT concat_ws(' ', state, wait_event_type, wait_event, left(query, 120)) AS session
             FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`,
        );
        throw new Error(
          `the held writers never got ready (${waiting} waiting for a lock); sessions:\n${rows.map((row) => row.session).join('\n')}`,
        );
      } finally {
        await client.query('COMMIT');
        await client.end();
      }
    },
  };
}
