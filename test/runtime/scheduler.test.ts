import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../src/db/database.js';
import { migrateControlPlane } from '../../src/db/migrator.js';
import { openPglite } from '../../src/db/pglite-driver.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { auditPruning, Scheduler } from '../../src/runtime/scheduler.js';
import { DRIVERS } from '../helpers/harness.js';
import { holdWrites } from '../helpers/hold-writes.js';
import { createDatabase } from '../helpers/postgres.js';

const DAY = 86_400_000;

describe.each(DRIVERS)('the cluster scheduler prunes the audit log, on %s', (driver) => {
  const databases: Database[] = [];
  let drop: (() => Promise<void>) | undefined;
  let url: string | undefined;

  beforeAll(async () => {
    if (driver === 'postgres') {
      const created = await createDatabase();
      drop = created.drop;
      url = created.url;
      // Two processes' worth of pools on one database.
      databases.push(await openPostgres({ url: created.url }), await openPostgres({ url: created.url }));
    } else {
      databases.push(await openPglite());
    }
    await migrateControlPlane(databases[0]!.owner);
  });
  afterAll(async () => {
    for (const db of databases) await db.close();
    await drop?.();
  });

  const seed = async (now: Date) => {
    const db = databases[0]!.owner;
    await db.query('DELETE FROM tenantry.audit_log');
    await db.query("DELETE FROM tenantry.settings WHERE key LIKE 'scheduler.%'");
    for (const ageDays of [200, 91, 89, 1]) {
      await db.query(
        "INSERT INTO tenantry.audit_log (at, actor, action, outcome) VALUES ($1, 'test', $2, 'success')",
        [new Date(now.getTime() - ageDays * DAY), `age.${ageDays}`],
      );
    }
  };
  const remaining = async () =>
    (
      await databases[0]!.owner.query<{ action: string }>('SELECT action FROM tenantry.audit_log ORDER BY at')
    ).rows.map((row) => row.action);

  it('deletes entries older than the retention, keeps the others, and records the run', async () => {
    const now = new Date();
    await seed(now);
    const scheduler = new Scheduler(databases[0]!.owner, [auditPruning(90, () => now)]);
    const [run] = await scheduler.tick(now);
    expect(run).toMatchObject({ job: 'prune-audit', ran: true, result: { deleted: 2 } });
    expect(await remaining()).toEqual(['age.89', 'age.1']);
    // Not due again until a day has passed.
    expect((await scheduler.tick(new Date(now.getTime() + DAY / 2)))[0]?.ran).toBe(false);
    expect((await scheduler.tick(new Date(now.getTime() + DAY + 1)))[0]?.ran).toBe(true);
  });

  it.runIf(driver === 'postgres')('runs once per cluster when several processes check at once', async () => {
    const now = new Date();
    await seed(now);
    const schedulers = [0, 1, 0, 1].map(
      (index) => new Scheduler(databases[index]!.owner, [auditPruning(90, () => now)]),
    );
    // Each run is held at its delete until every check has either skipped or reached it: without
    // the job's lock they would all find the job due, and all run it.
    const held = await holdWrites(url!, ['tenantry.audit_log']);
    let settled = 0;
    const ticking = Promise.all(
      schedulers.map((scheduler) => scheduler.tick(now).finally(() => (settled += 1))),
    );
    await held.releaseWhen((waiting) => waiting + settled >= schedulers.length);
    const runs = (await ticking).flat();
    expect(runs.filter((run) => run.ran)).toHaveLength(1);
    expect(await remaining()).toEqual(['age.89', 'age.1']);
  });
});
