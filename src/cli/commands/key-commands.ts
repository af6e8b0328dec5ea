import type { Command } from 'commander';
import { createKey, listKeys, regenerateKey, revokeKey } from '../../operations/keys/key-operations.js';
import { type CliContext, collect, command, type GlobalOptions } from '../cli-context.js';

/** `tenantry tenants keys list|create|revoke` and `tenantry tenants regenerate-key`. */
export function keyCommands(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  command(tenants, 'regenerate-key', 'revoke the tenant’s keys and print a new one (shown once)')
    .argument('<idOrSlug>')
    .action(async (idOrSlug: string, options: GlobalOptions) => {
      const issued = await cli.operations(options, (run) => run(regenerateKey, { tenant: idOrSlug }));
      if (options.json) return out.json(issued);
      out.line(issued.key);
      out.error(issued.warning);
    });

  const keys = tenants.command('keys').description('API keys of a tenant');
  command(keys, 'list', 'list keys (never their secrets)')
    .option('--include-revoked', 'include revoked keys')
    .argument('<idOrSlug>')
    .action(async (idOrSlug: string, options: GlobalOptions & { includeRevoked?: boolean }) => {
      const list = await cli.operations(options, (run) =>
        run(listKeys, { tenant: idOrSlug, includeRevoked: options.includeRevoked === true }),
      );
      if (options.json) return out.json(list.keys);
      out.table(list.keys, ['keyId', 'name', 'createdAt', 'lastUsedAt', 'revokedAt', 'expiresAt']);
    });
  command(keys, 'create', 'issue a further key, keeping the others (shown once)')
    .option('--name <name>', 'what the key is for')
    .option('--expires <date-time>', 'when it stops working (ISO 8601 with Z or an offset, or a date)')
    .option('--permission <permission>', 'what it may do (repeatable; default: everything)', collect, [])
    .argument('<idOrSlug>')
    .action(
      async (
        idOrSlug: string,
        options: GlobalOptions & { name?: string; expires?: string; permission: string[] },
      ) => {
        const issued = await cli.operations(options, (run) =>
          run(createKey, {
            tenant: idOrSlug,
            ...(options.name === undefined ? {} : { name: options.name }),
            ...(options.expires === undefined ? {} : { expiresAt: options.expires }),
            ...(options.permission.length > 0 ? { permissions: options.permission } : {}),
          }),
        );
        if (options.json) return out.json(issued);
        out.line(issued.key);
        out.error(issued.warning);
      },
    );
  command(keys, 'revoke', 'revoke one key: it stops working at once')
    .argument('<idOrSlug>')
    .argument('<keyId>', 'the key id a listing shows')
    .action(async (idOrSlug: string, keyId: string, options: GlobalOptions) => {
      const info = await cli.operations(options, (run) => run(revokeKey, { tenant: idOrSlug, keyId }));
      if (options.json) return out.json(info);
      out.line(`revoked ${info.keyId} at ${info.revokedAt}`);
    });
}
