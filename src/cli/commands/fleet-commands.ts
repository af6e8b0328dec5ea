import type { Command } from 'commander';
import { listAudit } from '../../operations/audit/list-audit.js';
import {
  addServer,
  listServers,
  removeServer,
  updateServer,
} from '../../operations/servers/server-operations.js';
import { type CliContext, command, type GlobalOptions, positiveInteger } from '../cli-context.js';
import { cliActor } from '../engine-client.js';
import { migrateCommand } from './migrate-command.js';

interface MigrateOptions extends GlobalOptions {
  plan?: boolean;
  concurrency?: number;
  canary?: number;
  allowDestructive?: boolean;
  wait?: boolean;
  lockTimeout?: number;
}

interface AuditOptions extends GlobalOptions {
  tenant?: string;
  action?: string;
  actor?: string;
  since?: string;
  until?: string;
  limit?: number;
}

/** `tenantry migrate`, `tenantry servers list|add|remove` and `tenantry audit`. */
export function fleetCommands(program: Command, cli: CliContext): void {
  const { out } = cli;
  command(
    program,
    'migrate',
    'bring every tenant’s tables to the declared entities (resumable; tenants already current are skipped)',
    false,
  )
    .option('--json', 'print the report (or plan) as JSON')
    .option('--plan', 'print what would change, with the SQL per isolation level, and change nothing')
    .option('--concurrency <n>', 'tenants migrated at once (default 4)', positiveInteger)
    .option('--canary <n>', 'migrate this many tenants and stop', positiveInteger)
    .option('--allow-destructive', 'allow dropping entities or fields and changing field types')
    .option('--wait', 'wait for a migration already running instead of exiting')
    .option(
      '--lock-timeout <ms>',
      'how long one tenant waits for a table lock (default 10000)',
      positiveInteger,
    )
    .action(async (options: MigrateOptions) => {
      cli.setExitCode(
        await migrateCommand(cli.config(options), options, {
          out,
          stderr: cli.stderr,
          context: { actor: cliActor() },
          interactive: (cli.stderr as NodeJS.WriteStream).isTTY === true,
        }),
      );
    });

  const servers = program.command('servers').description('PostgreSQL servers that hold database tenants');
  command(servers, 'list', 'list servers and their tenant counts').action(async (options: GlobalOptions) => {
    const list = await cli.operations(options, (run) => run(listServers, {}));
    if (options.json) return out.json(list);
    out.table(list, ['name', 'url', 'tenants', 'createdAt']);
  });
  command(servers, 'add', 'add a server (it must answer and may create databases)')
    .option('--admin-url <url>', 'owner connection string, when the runtime one cannot create databases')
    .argument('<name>')
    .argument('<url>', 'connection string for the runtime role (postgres://...)')
    .action(async (name: string, url: string, options: GlobalOptions & { adminUrl?: string }) => {
      const added = await cli.operations(options, (run) =>
        run(addServer, { name, url, ...(options.adminUrl ? { adminUrl: options.adminUrl } : {}) }),
      );
      if (options.json) return out.json(added);
      out.line(`added server ${name} (${added.url})`);
    });
  command(servers, 'update', 'change how a server is reached (the new URLs must reach its databases)')
    .option('--admin-url <url>', 'owner connection string, when the runtime one cannot create databases')
    .argument('<name>')
    .argument('<url>', 'connection string for the runtime role (postgres://...)')
    .action(async (name: string, url: string, options: GlobalOptions & { adminUrl?: string }) => {
      const updated = await cli.operations(options, (run) =>
        run(updateServer, { name, url, ...(options.adminUrl ? { adminUrl: options.adminUrl } : {}) }),
      );
      if (options.json) return out.json(updated);
      out.line(`server ${name} is reached at ${updated.url} now`);
    });
  command(servers, 'remove', 'remove a server that holds no tenant')
    .argument('<name>')
    .action(async (name: string, options: GlobalOptions) => {
      const removed = await cli.operations(options, (run) => run(removeServer, { name }));
      if (options.json) return out.json(removed);
      out.line(`removed server ${name}`);
    });

  command(program, 'audit', 'show audit entries, newest first')
    .option('--tenant <idOrSlug>', 'only this tenant')
    .option('--action <action>', 'only this action (or its prefix, e.g. tenant)')
    .option('--actor <actor>', 'only this actor (e.g. cli:alice, api-key:<id>)')
    .option('--since <time>', 'only entries at or after this ISO 8601 time')
    .option('--until <time>', 'only entries before this ISO 8601 time')
    .option('--limit <n>', 'how many entries (default 100)', positiveInteger)
    .action(async (options: AuditOptions) => {
      const { tenant, action, actor, since, until, limit } = options;
      const page = await cli.operations(options, (run) =>
        run(listAudit, {
          ...(tenant ? { tenant } : {}),
          ...(action ? { action } : {}),
          ...(actor ? { actor } : {}),
          ...(since ? { since } : {}),
          ...(until ? { until } : {}),
          ...(limit ? { limit } : {}),
        }),
      );
      if (options.json) return out.json(page.entries);
      out.table(page.entries, ['at', 'actor', 'action', 'outcome', 'tenantId', 'target', 'clientAddress']);
    });
}
