import { type Command, Option } from 'commander';
import type { OutputOf } from '../../operations/operation.js';
import { createTenant } from '../../operations/tenants/create-tenant.js';
import { deleteTenant } from '../../operations/tenants/delete-tenant.js';
import { listTenants } from '../../operations/tenants/list-tenants.js';
import { repairTenant } from '../../operations/tenants/repair-tenant.js';
import { showTenant } from '../../operations/tenants/show-tenant.js';
import { activateTenant, deactivateTenant } from '../../operations/tenants/tenant-status.js';
import type { TenantView } from '../../tenants/tenant-view.js';
import { type CliContext, collect, command, ExitCode, type GlobalOptions } from '../cli-context.js';
import type { Output } from '../output.js';

export function printTenant(out: Output, tenant: TenantView): void {
  out.line(`id:        ${tenant.id}`);
  out.line(`slug:      ${tenant.slug}`);
  out.line(`name:      ${tenant.name}`);
  out.line(`status:    ${tenant.status}`);
  out.line(`isolation: ${tenant.isolation}`);
  out.line(`hosts:     ${tenant.hosts.length > 0 ? tenant.hosts.join(', ') : '-'}`);
}

interface CreateOptions extends GlobalOptions {
  host: string[];
  isolation?: 'row' | 'schema' | 'database';
  server?: string;
  plan?: string;
  adminEmail?: string;
}

/** `tenantry tenants create|list|show|activate|deactivate|delete|repair`. */
export function tenantCommands(tenants: Command, cli: CliContext): void {
  createCommand(tenants, cli);
  listCommand(tenants, cli);
  changeCommands(tenants, cli);
}

function createCommand(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  command(tenants, 'create', 'create a tenant and print its API key (shown once)')
    .argument('<name>', 'display name')
    .argument('<slug>', 'DNS label: lowercase a-z, 0-9 and -, 3 to 63 characters')
    .option('--host <host>', 'a hostname of the tenant (repeatable)', collect, [])
    .addOption(
      new Option('--isolation <level>', 'where its rows live').choices(['row', 'schema', 'database']),
    )
    .option('--server <name>', 'database server of a database tenant (default: the one with the fewest)')
    .option('--plan <plan>', 'its plan (from plans in the config file)')
    .option('--admin-email <email>', 'its first administrator: a one-time set-up token is printed')
    .action(async (name: string, slug: string, options: CreateOptions) => {
      const created = await cli.operations(options, (run) =>
        run(createTenant, {
          name,
          slug,
          ...(options.host.length > 0 ? { hosts: options.host } : {}),
          ...(options.isolation ? { isolation: options.isolation } : {}),
          ...(options.server ? { server: options.server } : {}),
          ...(options.plan ? { plan: options.plan } : {}),
          ...(options.adminEmail === undefined ? {} : { adminEmail: options.adminEmail }),
        }),
      );
      if (options.json) return out.json(created);
      printTenant(out, created.tenant);
      out.line(`api key:   ${created.apiKey.key}`);
      out.error(created.apiKey.warning);
      if (created.admin?.setupToken) {
        out.line(`admin:     ${created.admin.user.email}`);
        out.line(`set-up token: ${created.admin.setupToken}`);
        out.error(created.admin.warning ?? '');
      }
    });
}

function listCommand(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  command(tenants, 'list', 'list tenants (active only unless asked)')
    .option('--include-inactive', 'include inactive tenants')
    .option('--include-deleted', 'include deleted tenants')
    .action(async (options: GlobalOptions & { includeInactive?: boolean; includeDeleted?: boolean }) => {
      const all = await cli.operations(options, async (run) => {
        const rows: TenantView[] = [];
        let after: string | null = null;
        do {
          const page: OutputOf<typeof listTenants> = await run(listTenants, {
            includeInactive: options.includeInactive === true,
            includeDeleted: options.includeDeleted === true,
            limit: 1000,
            ...(after ? { after } : {}),
          });
          rows.push(...page.tenants);
          after = page.next;
        } while (after);
        return rows;
      });
      if (options.json) return out.json(all);
      out.table(all, ['id', 'slug', 'name', 'status', 'isolation', 'hosts']);
    });
}

function changeCommands(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  for (const [name, operation, description] of [
    ['show', showTenant, 'show a tenant'],
    ['activate', activateTenant, 'activate a tenant'],
    ['deactivate', deactivateTenant, 'deactivate a tenant: it stops resolving at once'],
  ] as const) {
    command(tenants, name, description)
      .argument('<idOrSlug>')
      .action(async (idOrSlug: string, options: GlobalOptions) => {
        const tenant = await cli.operations(options, (run) => run(operation, { tenant: idOrSlug }));
        if (options.json) return out.json(tenant);
        printTenant(out, tenant);
      });
  }

  command(tenants, 'delete', 'delete a tenant (soft): keys revoked, hosts released; --purge removes its data')
    .argument('<idOrSlug>')
    .option('--purge', 'also drop its rows, schema or database, keys and record (cannot be undone)')
    .action(async (idOrSlug: string, options: GlobalOptions & { purge?: boolean }) => {
      const tenant = await cli.operations(options, (run) =>
        run(deleteTenant, { tenant: idOrSlug, purge: options.purge === true }),
      );
      if (options.json) return out.json(tenant);
      printTenant(out, tenant);
      if (options.purge) out.line('purged: its data, keys and record are gone (the audit trail stays)');
    });

  command(
    tenants,
    'repair',
    'finish a tenant a crash left half done (provisioning or purge), or check its tables',
  )
    .argument('<idOrSlug>')
    .action(async (idOrSlug: string, options: GlobalOptions) => {
      const report = await cli.operations(options, (run) => run(repairTenant, { tenant: idOrSlug }));
      if (options.json) out.json(report);
      else {
        printTenant(out, report.tenant);
        out.line(`repair:    ${report.action}: ${report.detail}`);
        if (report.apiKey) {
          out.line(`api key:   ${report.apiKey.key}`);
          out.error(report.apiKey.warning);
        }
      }
      if (report.differences && report.differences.length > 0) cli.setExitCode(ExitCode.FAILURE);
    });
}
