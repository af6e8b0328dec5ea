import { type Command, CommanderError } from 'commander';
import type { TenantryConfig } from '../config/config-schema.js';
import { withOperations } from './engine-client.js';
import type { Output } from './output.js';

interface CommandOptions {
  config?: string;
  json?: boolean;
  tenant?: string;
}

export interface IdentityCommandContext {
  readonly withConfigOption: (command: Command) => Command;
  readonly config: (options: { config?: string }) => TenantryConfig;
  readonly out: Output;
  readonly stdin: NodeJS.ReadableStream;
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The first line of standard input, without its line ending (`--password-stdin`). */
async function readFirstLine(stdin: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/, 1)[0] ?? '';
}

interface UserJson {
  id: string;
  email: string;
  status: string;
  roles: { name: string }[];
  groups: { name: string }[];
  globalAdmin: boolean;
}

/** `tenantry users|roles|clients ...`: thin commands over the identity operations. */
export function identityCommands(program: Command, context: IdentityCommandContext): void {
  const { withConfigOption, config, out, stdin } = context;
  const command = (parent: Command, name: string, description: string) =>
    withConfigOption(parent.command(name).description(description)).option('--json', 'print JSON');
  const printUsers = (users: UserJson[]) =>
    out.table(
      users.map((user) => ({
        ...user,
        roles: user.roles.map((role) => role.name),
        groups: user.groups.map((group) => group.name),
      })),
      ['id', 'email', 'status', 'roles', 'groups'],
    );

  const users = program.command('users').description('users of a tenant, and global admins');
  command(users, 'create', 'create a user; without --password a one-time set-up token is printed')
    .option('--tenant <idOrSlug>', 'the tenant of the user')
    .option('--global-admin', 'a global admin: no tenant, the admin routes')
    .requiredOption('--email <email>', 'login name, unique across all tenants (required)')
    .option(
      '--password <password>',
      'a password (at least 12 characters); other users of the machine can see it in the process list',
    )
    .option('--password-stdin', 'read the password from the first line of standard input')
    .option(
      '--role <role>',
      'a role name or id (repeatable; default: the tenant’s default role)',
      collect,
      [],
    )
    .action(
      async (
        options: CommandOptions & {
          globalAdmin?: boolean;
          email: string;
          password?: string;
          passwordStdin?: boolean;
          role: string[];
        },
      ) => {
        // Exit code 2 (usage): contradictory or missing flags change nothing.
        if (options.globalAdmin && (options.tenant !== undefined || options.role.length > 0)) {
          throw new CommanderError(
            2,
            'tenantry.conflictingOptions',
            '--global-admin takes no --tenant or --role',
          );
        }
        if (!options.globalAdmin && options.tenant === undefined) {
          throw new CommanderError(2, 'tenantry.missingOption', 'say --tenant <idOrSlug>, or --global-admin');
        }
        if (options.password !== undefined && options.passwordStdin) {
          throw new CommanderError(
            2,
            'tenantry.conflictingOptions',
            'say --password or --password-stdin, not both',
          );
        }
        if (options.password !== undefined) {
          out.error('warning: --password is visible to other users of this machine; prefer --password-stdin');
        }
        const password = options.passwordStdin ? await readFirstLine(stdin) : options.password;
        const created = (await withOperations(config(options), (run) =>
          run('users.create', {
            ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
            globalAdmin: options.globalAdmin === true,
            email: options.email,
            ...(password === undefined ? {} : { password }),
            roles: options.role,
          }),
        )) as { user: UserJson; setupToken?: string; warning?: string };
        if (options.json) return out.json(created);
        printUsers([created.user]);
        if (created.setupToken) {
          out.line(`set-up token: ${created.setupToken}`);
          out.error(created.warning ?? '');
        }
      },
    );
  command(users, 'list', 'list the users of a tenant (without --tenant: the global admins)')
    .option('--tenant <idOrSlug>', 'the tenant')
    .action(async (options: CommandOptions) => {
      const list = (await withOperations(config(options), (run) =>
        run('users.list', options.tenant === undefined ? {} : { tenant: options.tenant }),
      )) as UserJson[];
      if (options.json) return out.json(list);
      printUsers(list);
    });
  for (const [name, operation, description] of [
    ['deactivate', 'users.deactivate', 'deactivate a user: its sessions end at once'],
    ['reset-password', 'users.resetPassword', 'end the user’s sessions and print a one-time set-up token'],
  ] as const) {
    command(users, name, description)
      .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
      .argument('<user>', 'email or id')
      .action(async (user: string, options: CommandOptions) => {
        const result = (await withOperations(config(options), (run) =>
          run(operation, { tenant: options.tenant, user }),
        )) as { setupToken?: string; warning?: string; email?: string; status?: string };
        if (options.json) return out.json(result);
        if (result.setupToken) {
          out.line(`set-up token: ${result.setupToken}`);
          out.error(result.warning ?? '');
        } else out.line(`${result.email}: ${result.status}`);
      });
  }

  const roles = program.command('roles').description('roles of a tenant');
  command(roles, 'list', 'list the roles of a tenant and their permissions')
    .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
    .action(async (options: CommandOptions) => {
      const list = (await withOperations(config(options), (run) =>
        run('roles.list', { tenant: options.tenant }),
      )) as Record<string, unknown>[];
      if (options.json) return out.json(list);
      out.table(list, ['name', 'builtIn', 'default', 'permissions']);
    });

  const clients = program.command('clients').description('machine clients');
  command(clients, 'create', 'new client credentials; the secret is printed once')
    .option('--tenant <idOrSlug>', 'its tenant (none: orphaned until given one)')
    .requiredOption('--name <name>', 'what the client is (required)')
    .action(async (options: CommandOptions & { name: string }) => {
      const issued = (await withOperations(config(options), (run) =>
        run('clients.create', {
          name: options.name,
          ...(options.tenant === undefined ? {} : { tenant: options.tenant }),
        }),
      )) as { clientId: string; clientSecret: string; warning: string };
      if (options.json) return out.json(issued);
      out.line(`client id:     ${issued.clientId}`);
      out.line(`client secret: ${issued.clientSecret}`);
      out.error(issued.warning);
    });
  command(clients, 'list', 'list the clients of a tenant, or all of them with their tenant')
    .option('--tenant <idOrSlug>', 'the tenant')
    .option('--orphaned', 'only clients without a tenant')
    .action(async (options: CommandOptions & { orphaned?: boolean }) => {
      const list = (await withOperations(config(options), (run) =>
        run(
          'clients.list',
          options.tenant === undefined ? { orphaned: options.orphaned === true } : { tenant: options.tenant },
        ),
      )) as Record<string, unknown>[];
      if (options.json) return out.json(list);
      out.table(list, ['id', 'clientId', 'name', 'tenantSlug', 'state', 'lastSeenAt', 'lastAddress']);
    });
  command(clients, 'revoke', 'revoke a client: it can no longer connect')
    .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
    .argument('<id>', 'the client id (uuid)')
    .action(async (id: string, options: CommandOptions) => {
      const result = await withOperations(config(options), (run) =>
        run('clients.revoke', { tenant: options.tenant, id }),
      );
      if (options.json) return out.json(result);
      out.line(`revoked ${id}`);
    });
}
