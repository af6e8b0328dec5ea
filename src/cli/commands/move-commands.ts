import { type Command, Option } from 'commander';
import { finishMoveOperation, moveTenantOperation } from '../../operations/tenants/move-tenant.js';
import { type CliContext, command, type GlobalOptions, usageError } from '../cli-context.js';
import { progressReporter } from '../progress.js';

interface MoveOptions extends GlobalOptions {
  to?: 'row' | 'schema' | 'database';
  server?: string;
  keepSource?: boolean;
  finish?: boolean;
}

/** `tenantry tenants move`: to another isolation level or server, online. */
export function moveCommands(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  command(
    tenants,
    'move',
    'move a tenant to another isolation level or database server while it serves (Ctrl-C or `jobs cancel` stops it before its switch)',
  )
    .argument('<tenant>', 'id or slug')
    .addOption(
      new Option('--to <level>', 'the isolation level to move to').choices(['row', 'schema', 'database']),
    )
    .option('--server <name>', 'the database server of a database target')
    .option('--keep-source', 'keep the old copy (sealed) until `--finish`')
    .option('--finish', 'drop the old copy of the tenant’s finished move')
    .action(async (tenant: string, options: MoveOptions) => {
      if (options.finish) {
        if (options.to || options.server || options.keepSource) {
          throw usageError('finishAlone', '--finish takes no other option');
        }
        const { dropped } = await cli.operations(options, (run) => run(finishMoveOperation, { tenant }));
        if (options.json) return out.json({ dropped });
        return out.line(
          `dropped the old copy (${dropped.isolation}${dropped.server ? ` on ${dropped.server}` : ''})`,
        );
      }
      if (!options.to) throw usageError('moveWhere', 'say where to: --to row|schema|database (or --finish)');
      const mode = options.json ? 'none' : cli.interactive ? 'bar' : 'lines';
      const progress = progressReporter(cli.stderr, out, 'moving', mode);
      const report = await cli
        .operations(options, (run) =>
          run(
            moveTenantOperation,
            {
              tenant,
              to: options.to!,
              ...(options.server ? { server: options.server } : {}),
              ...(options.keepSource ? { keepSource: true } : {}),
            },
            { onProgress: (event) => progress.update(event) },
          ),
        )
        .finally(() => progress.stop());
      if (options.json) return out.json(report);
      const place = (p: { isolation: string; server: string | null }) =>
        p.isolation === 'database' ? `database on ${p.server}` : p.isolation;
      out.line(`moved:     ${place(report.from)} -> ${place(report.to)}`);
      out.line(`rows:      ${report.rows} copied, ${report.changesApplied} changed meanwhile and applied`);
      out.line(`freeze:    ${report.freezeMs} ms of held writes, ${report.totalMs} ms in all`);
      out.line(
        report.sourceDropped
          ? 'old copy:  dropped'
          : 'old copy:  sealed, dropped after the grace period (or now: tenants move <tenant> --finish)',
      );
    });
}
