import type { Command } from 'commander';
import { changeTenantConfig, showTenantConfig } from '../../operations/tenants/tenant-config.js';
import { addHost, removeHost } from '../../operations/tenants/tenant-hosts.js';
import { parseConfigPath, valueAtPath } from '../../tenants/tenant-config-paths.js';
import { type CliContext, command, ExitCode, type GlobalOptions } from '../cli-context.js';
import { printTenant } from './tenant-commands.js';

/** A config value from the command line: JSON when it parses (50, true, ["a"]), else the text. */
function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** `tenantry tenants config get|set|unset` and `tenantry tenants hosts add|remove`. */
export function tenantConfigCommands(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  const config = tenants
    .command('config')
    .description("a tenant's configuration (plan, features, limits, branding, settings)");
  command(config, 'get', 'show the effective configuration, or one value of it')
    .argument('<idOrSlug>')
    .argument('[path]', 'plan, features, limits.<name>, branding.<name>, settings.<key>...')
    .action(async (idOrSlug: string, path: string | undefined, options: GlobalOptions) => {
      const view = await cli.operations(options, (run) => run(showTenantConfig, { tenant: idOrSlug }));
      if (path === undefined)
        return options.json ? out.json(view) : out.line(JSON.stringify(view.effective, null, 2));
      const value = valueAtPath(view.effective, parseConfigPath(path));
      if (value === undefined) {
        out.error(`${path} is not set (neither by the tenant nor by its plan)`);
        cli.setExitCode(ExitCode.FAILURE);
        return;
      }
      out.line(options.json || typeof value !== 'string' ? JSON.stringify(value) : value);
    });
  command(config, 'set', 'override one value (JSON, or a plain string)')
    .argument('<idOrSlug>')
    .argument('<path>')
    .argument('<value>')
    .action(async (idOrSlug: string, path: string, raw: string, options: GlobalOptions) => {
      const view = await cli.operations(options, (run) =>
        run(changeTenantConfig, { tenant: idOrSlug, set: { [path]: parseValue(raw) } }),
      );
      if (options.json) return out.json(view);
      out.line(`${path} set`);
    });
  command(config, 'unset', "remove an override: its plan's value applies again")
    .argument('<idOrSlug>')
    .argument('<path>')
    .action(async (idOrSlug: string, path: string, options: GlobalOptions) => {
      const view = await cli.operations(options, (run) =>
        run(changeTenantConfig, { tenant: idOrSlug, unset: [path] }),
      );
      if (options.json) return out.json(view);
      out.line(`${path} unset`);
    });

  const hosts = tenants.command('hosts').description('hostnames of a tenant');
  for (const [name, operation] of [
    ['add', addHost],
    ['remove', removeHost],
  ] as const) {
    command(hosts, name, `${name} a hostname`)
      .argument('<idOrSlug>')
      .argument('<host>')
      .action(async (idOrSlug: string, host: string, options: GlobalOptions) => {
        const tenant = await cli.operations(options, (run) => run(operation, { tenant: idOrSlug, host }));
        if (options.json) return out.json(tenant);
        printTenant(out, tenant);
      });
  }
}
