import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SCHEDULED_BACKUPS_JOB, scheduledBackups } from '../../src/lifecycle/scheduled-backups.js';
import { Scheduler } from '../../src/runtime/scheduler.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const HOUR = 3_600_000;

describe.each(DRIVERS)('scheduled backups (%s)', (driver) => {
  let env: TestEnv;
  let dir: string;
  let tenants: { id: string }[];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tenantry-scheduled-'));
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    tenants = [await env.createTenant('sched-a'), await env.createTenant('sched-b', { isolation: 'schema' })];
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('backs up every tenant once per interval across processes, keeping the newest N', async () => {
    const errors: unknown[] = [];
    const job = () =>
      scheduledBackups(env.engine.archives, env.engine.jobs, { directory: dir, keep: 2 }, HOUR, (error) =>
        errors.push(error),
      );
    // Two processes' schedulers over one database: one of them runs it.
    const first = new Scheduler(env.engine.db.owner, [job()]);
    const second = new Scheduler(env.engine.db.owner, [job()]);
    const start = Date.now();
    const runs = [...(await first.tick(new Date(start))), ...(await second.tick(new Date(start)))];
    expect(runs.filter((run) => run.ran)).toHaveLength(1);
    await env.engine.jobs.idle();
    for (let round = 1; round <= 3; round += 1) {
      expect((await first.tick(new Date(start + round * HOUR + 1)))[0]?.ran).toBe(true);
      await env.engine.jobs.idle();
    }
    for (const tenant of tenants) {
      const names = await readdir(join(dir, tenant.id));
      expect(names.filter((name) => name.startsWith('scheduled-'))).toHaveLength(2);
    }
    const jobs = await env.engine.jobs.store.list({ kind: SCHEDULED_BACKUPS_JOB });
    expect(jobs).toHaveLength(4);
    expect(jobs[0]).toMatchObject({ status: 'succeeded', result: { tenants: 2, backedUp: 2, failed: [] } });
    expect(errors).toEqual([]);
  }, 60_000);
});
