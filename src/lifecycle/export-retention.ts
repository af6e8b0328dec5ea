import { rm } from 'node:fs/promises';
import type { ScheduledJob } from '../runtime/scheduler.js';

/**
 * Finished exports are downloadable for `retentionHours`, then their files are deleted (a
 * tenant's whole data should not sit on the server's disk for ever). The job stays, without its
 * file: a late download is told the file is gone. Hourly, once per cluster.
 */
export function exportPruning(retentionHours: number): ScheduledJob {
  return {
    name: 'prune-exports',
    everyMs: 3_600_000,
    async run(tx) {
      const { rows } = await tx.query<{ file: string }>(
        `WITH expired AS (
           SELECT id, file FROM tenantry.jobs
            WHERE kind = 'export' AND file IS NOT NULL AND finished_at < now() - make_interval(hours => $1)
            FOR UPDATE
         )
         UPDATE tenantry.jobs j SET file = NULL FROM expired WHERE j.id = expired.id RETURNING expired.file`,
        [retentionHours],
      );
      for (const row of rows) if (row.file) await rm(row.file, { force: true });
      return { deleted: rows.length, olderThanHours: retentionHours };
    },
  };
}
