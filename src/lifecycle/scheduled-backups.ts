import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Queryable } from '../db/database.js';
import type { ActionContext } from '../runtime/actor.js';
import type { ScheduledJob } from '../runtime/scheduler.js';
import type { JobContext, JobOutcome, JobRunner } from './jobs/job-runner.js';
import { jobRunning } from './jobs/job-store.js';
import { type BackupDeps, backupTenantToFile } from './tenant-backup.js';

export interface ScheduledBackupSettings {
  readonly directory: string;
  /** The newest archives kept per tenant. */
  readonly keep: number;
  readonly key?: Buffer;
}

const PREFIX = 'scheduled-';
const SUFFIX = '.tenantry.tgz';

/** `scheduled-20261207T211500.123Z.tenantry.tgz`: names sort by time. */
export function scheduledArchiveName(at: Date): string {
  return `${PREFIX}${at.toISOString().replace(/[-:]/g, '')}${SUFFIX}`;
}

/**
 * Backs up every live tenant into `<directory>/<tenant id>/`, one after the other, and keeps the
 * newest `keep` scheduled archives of each (archives made by hand or by a job are not counted or
 * touched). A tenant that fails is reported and the run goes on; each archive is whole or absent.
 */
export async function backUpEveryTenant(
  deps: BackupDeps,
  settings: ScheduledBackupSettings,
  context: ActionContext,
  job: JobContext,
): Promise<JobOutcome> {
  const ids = await liveTenantIds(deps.db.owner);
  const failed: { tenantId: string; error: string }[] = [];
  let rows = 0;
  let done = 0;
  for (const id of ids) {
    job.progress({ done, total: ids.length, unit: 'tenants' });
    const directory = join(settings.directory, id);
    try {
      await mkdir(directory, { recursive: true, mode: 0o700 });
      const report = await backupTenantToFile(
        deps,
        id,
        join(directory, scheduledArchiveName(new Date())),
        context,
        {
          ...(settings.key ? { key: settings.key } : {}),
        },
      );
      rows += report.rows;
      await pruneScheduled(directory, settings.keep);
    } catch (error) {
      failed.push({ tenantId: id, error: error instanceof Error ? error.message : String(error) });
    }
    done += 1;
  }
  job.progress({ done, total: ids.length, unit: 'tenants' });
  return { result: { tenants: ids.length, backedUp: ids.length - failed.length, rows, failed }, file: null };
}

/** Removes all but the newest `keep` scheduled archives in a tenant's directory. */
export async function pruneScheduled(directory: string, keep: number): Promise<string[]> {
  const names = (await readdir(directory))
    .filter((name) => name.startsWith(PREFIX) && name.endsWith(SUFFIX))
    .sort()
    .reverse();
  const removed = names.slice(keep);
  for (const name of removed) await rm(join(directory, name), { force: true });
  return removed;
}

async function liveTenantIds(db: Queryable): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    "SELECT id FROM tenantry.tenants WHERE status IN ('active', 'inactive') ORDER BY id",
  );
  return rows.map((row) => row.id);
}

export const SCHEDULED_BACKUPS_JOB = 'scheduled-backups';

/**
 * The scheduler's entry for `backups.schedule`: whichever process takes it when due starts one
 * run of `backUpEveryTenant` as a job (so it is followed like any job), unless a run is still
 * going somewhere. One process at a time across the fleet: the scheduler's lock, then the job's.
 */
export function scheduledBackups(
  deps: BackupDeps,
  jobs: JobRunner,
  settings: ScheduledBackupSettings,
  everyMs: number,
  onError: (error: unknown) => void,
): ScheduledJob {
  const context: ActionContext = { actor: { kind: 'system', id: 'scheduler' } };
  return {
    name: 'backups',
    everyMs,
    async run(tx) {
      return (await jobRunning(tx, SCHEDULED_BACKUPS_JOB))
        ? { started: false, reason: 'the previous run is still going' }
        : { started: true };
    },
    afterCommit(result) {
      if (result.started !== true) return;
      jobs
        .start(SCHEDULED_BACKUPS_JOB, null, 'system:scheduler', {}, (job) =>
          backUpEveryTenant(deps, settings, context, job),
        )
        .catch(onError);
    },
  };
}
