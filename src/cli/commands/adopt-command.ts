import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { stringify } from 'yaml';
import { proposeAdoption, writeProposal } from '../../lifecycle/adopt/adopt-database.js';
import type { AdoptPlan } from '../../lifecycle/adopt/adopt-plan.js';
import { adoptTenant } from '../../operations/tenants/adopt-tenant.js';
import { type CliContext, command, type GlobalOptions, usageError } from '../cli-context.js';
import type { Output } from '../output.js';
import { progressReporter } from '../progress.js';
import { printTenant } from './tenant-commands.js';

interface AdoptOptions extends GlobalOptions {
  from: string;
  schema?: string;
  tables?: string;
  tenant?: string;
  isolation?: 'row' | 'schema' | 'database';
  plan?: boolean;
  writeConfig?: string;
}

function printPlan(out: Output, plan: AdoptPlan): void {
  out.line(stringify({ entities: plan.entities }).trimEnd());
  for (const note of plan.notes) out.error(`note: ${note}`);
  for (const item of plan.unmapped) {
    out.error(`not adopted: ${item.table}${item.column ? `.${item.column}` : ''}: ${item.reason}`);
  }
}

/**
 * `tenantry adopt`: `--plan` prints the entities proposed for a single-tenant database and what
 * cannot be mapped, `--write-config` writes them into the config file (neither touches a Tenantry
 * database); without them, the tables are copied into a new tenant.
 */
export function adoptCommand(program: Command, cli: CliContext): void {
  const { out } = cli;
  command(program, 'adopt', "bring a single-tenant application's PostgreSQL database in as a tenant")
    .requiredOption('--from <url>', 'PostgreSQL URL of the database to adopt')
    .option('--schema <name>', 'its schema (default public)')
    .option('--tables <a,b>', 'only these tables')
    .option('--tenant <slug>', 'the new tenant (required to copy)')
    .addOption(new Option('--isolation <level>', 'where its rows go').choices(['row', 'schema', 'database']))
    .option('--plan', 'print the proposed entities and what cannot be mapped; change nothing')
    .option('--write-config <file>', 'write the proposed entities into this config file; change no database')
    .action(async (options: AdoptOptions) => {
      const tables = options.tables
        ?.split(',')
        .map((name) => name.trim())
        .filter((name) => name !== '');
      const source = {
        from: options.from,
        ...(options.schema ? { schema: options.schema } : {}),
        ...(tables && tables.length > 0 ? { tables } : {}),
      };
      if (options.plan || options.writeConfig) {
        const plan = await proposeAdoption(source);
        if (options.writeConfig) {
          const file = resolve(cli.cwd, options.writeConfig);
          writeProposal(file, plan);
          if (!options.json)
            out.error(
              `wrote ${Object.keys(plan.entities).length} entities into ${file}: run tenantry migrate, then adopt`,
            );
        }
        if (options.json) return out.json(plan);
        printPlan(out, plan);
        return;
      }
      if (!options.tenant)
        throw usageError('missingTenant', 'adopt needs --tenant SLUG to copy (or --plan to look)');
      const progress = progressReporter(
        cli.stderr,
        out,
        'adopting',
        options.json ? 'none' : cli.interactive ? 'bar' : 'lines',
      );
      const report = await cli
        .operations(options, (run) =>
          run(
            adoptTenant,
            {
              ...source,
              tenant: options.tenant!,
              ...(options.isolation ? { isolation: options.isolation } : {}),
            },
            { onProgress: (event) => progress.update(event) },
          ),
        )
        .finally(() => progress.stop());
      if (options.json) return out.json(report);
      printTenant(out, report.tenant);
      out.line(`rows:      ${report.rows} from ${report.tables.map((table) => table.table).join(', ')}`);
      for (const item of report.unmapped) {
        out.error(`not adopted: ${item.table}${item.column ? `.${item.column}` : ''}: ${item.reason}`);
      }
      if (report.apiKey) {
        out.line(`api key:   ${report.apiKey.key}`);
        out.error(report.apiKey.warning);
      }
    });
}
