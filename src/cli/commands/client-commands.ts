import type { Command } from 'commander';
import { createClient } from '../../operations/clients/create-client.js';
import { listAllClients, listClients } from '../../operations/clients/list-clients.js';
import { revokeClient } from '../../operations/clients/revoke-client.js';
import { type CliContext, command, type GlobalOptions } from '../cli-context.js';

interface TenantOption extends GlobalOptions {
  tenant?: string;
}

/** `tenantry clients create|list|revoke`. */
export function clientCommands(program: Command, cli: CliContext): void {
  const { out } = cli;
  const clients = program.command('clients').description('machine clients');
  command(clients, 'create', 'new client credentials; the secret is printed once')
    .option('--tenant <idOrSlug>', 'its tenant (none: orphaned until given one)')
    .requiredOption('--name <name>', 'what the client is (required)')
    .action(async (options: TenantOption & { name: string }) => {
      const issued = await cli.operations(options, (run) =>
        run(createClient, {
          name: options.name,
          ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
        }),
      );
      if (options.json) return out.json(issued);
      out.line(`client id:     ${issued.clientId}`);
      out.line(`client secret: ${issued.clientSecret}`);
      out.error(issued.warning);
    });
  command(clients, 'list', 'list the clients of a tenant, or all of them with their tenant')
    .option('--tenant <idOrSlug>', 'the tenant')
    .option('--orphaned', 'only clients without a tenant')
    .action(async (options: TenantOption & { orphaned?: boolean }) => {
      const list = await cli.operations(options, async (run) =>
        options.tenant === undefined
          ? (await run(listAllClients, { orphaned: options.orphaned === true })).items
          : (await run(listClients, { tenant: options.tenant })).items,
      );
      if (options.json) return out.json(list);
      out.table(list, ['id', 'clientId', 'name', 'tenantSlug', 'state', 'lastSeenAt', 'lastAddress']);
    });
  command(clients, 'revoke', 'revoke a client: it can no longer connect')
    .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
    .argument('<id>', 'the client id (uuid)')
    .action(async (id: string, options: TenantOption) => {
      const result = await cli.operations(options, (run) =>
        run(revokeClient, { tenant: options.tenant, id }),
      );
      if (options.json) return out.json(result);
      out.line(`revoked ${id}`);
    });
}
