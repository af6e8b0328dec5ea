import type { Command } from 'commander';
import { cancelJob, listJobs, showJob } from '../../operations/jobs/jobs.js';
import { type CliContext, command, type GlobalOptions, positiveInteger } from '../cli-context.js';

/** `tenantry jobs list|show|cancel`: backups, exports and moves, run in the background or by a CLI. */
export function jobCommands(program: Command, cli: CliContext): void {
  const { out } = cli;
  const jobs = program.command('jobs').description('background jobs: backups, exports and moves');
  command(jobs, 'list', 'jobs, newest first')
    .option('--tenant <idOrSlug>', "one tenant's jobs")
    .option('--kind <kind>', 'backup, export, scheduled-backups')
    .option('--limit <n>', 'at most this many (default 100)', positiveInteger)
    .action(async (options: GlobalOptions & { tenant?: string; kind?: string; limit?: number }) => {
      const { items } = await cli.operations(options, (run) =>
        run(listJobs, {
          ...(options.tenant ? { tenant: options.tenant } : {}),
          ...(options.kind ? { kind: options.kind } : {}),
          ...(options.limit ? { limit: options.limit } : {}),
        }),
      );
      if (options.json) return out.json(items);
      out.table(
        items.map((job) => ({
          ...job,
          progress: job.progress
            ? `${job.progress.done}${job.progress.total === undefined ? '' : `/${job.progress.total}`} ${job.progress.unit}`
            : '',
        })),
        ['id', 'kind', 'tenantId', 'status', 'progress', 'createdAt', 'finishedAt'],
      );
    });
  command(jobs, 'show', 'one job: its progress, and its result or error')
    .argument('<id>')
    .action(async (id: string, options: GlobalOptions) => {
      const job = await cli.operations(options, (run) => run(showJob, { id }));
      if (options.json) return out.json(job);
      out.line(`id:        ${job.id}`);
      out.line(`kind:      ${job.kind}`);
      out.line(`tenant:    ${job.tenantId ?? '-'}`);
      out.line(`status:    ${job.status}`);
      if (job.progress)
        out.line(
          `progress:  ${job.progress.done}${job.progress.total === undefined ? '' : `/${job.progress.total}`} ${job.progress.unit}`,
        );
      if (job.error) out.line(`error:     ${job.error.code}: ${job.error.message}`);
      if (job.result && typeof job.result.file === 'string') out.line(`file:      ${job.result.file}`);
      out.line(`created:   ${job.createdAt}`);
      if (job.finishedAt) out.line(`finished:  ${job.finishedAt}`);
    });
  command(
    jobs,
    'cancel',
    'ask a running job to stop (a move stops before its switch, leaving the tenant where it was)',
  )
    .argument('<id>')
    .action(async (id: string, options: GlobalOptions) => {
      const job = await cli.operations(options, (run) => run(cancelJob, { id }));
      if (options.json) return out.json(job);
      out.line(`cancel asked: job ${job.id} (${job.kind}) stops within a few seconds`);
    });
}
