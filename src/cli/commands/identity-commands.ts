import type { Command } from 'commander';
import type { UserJson } from '../../auth/user-view.js';
import { listRoles } from '../../operations/roles/list-roles.js';
import { createUser } from '../../operations/users/create-user.js';
import { createAdmin, listAdmins } from '../../operations/users/global-admins.js';
import { listUsers } from '../../operations/users/list-users.js';
import { resetPassword } from '../../operations/users/reset-password.js';
import { updateUser } from '../../operations/users/update-user.js';
import { type CliContext, collect, command, type GlobalOptions, usageError } from '../cli-context.js';

interface TenantOption extends GlobalOptions {
  tenant?: string;
}

interface CreateOptions extends TenantOption {
  globalAdmin?: boolean;
  email: string;
  password?: string;
  passwordStdin?: boolean;
  role: string[];
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

/** `tenantry users create|list|deactivate|reset-password` and `tenantry roles list`. */
export function identityCommands(program: Command, cli: CliContext): void {
  const users = program.command('users').description('users of a tenant, and global admins');
  userCreateCommand(users, cli);
  userCommands(users, cli);
  roleCommands(program, cli);
}

function printUsers(cli: CliContext, users: readonly UserJson[]): void {
  cli.out.table(
    users.map((user) => ({
      ...user,
      roles: user.roles.map((role) => role.name),
      groups: user.groups.map((group) => group.name),
    })),
    ['id', 'email', 'status', 'roles', 'groups'],
  );
}

function userCreateCommand(users: Command, cli: CliContext): void {
  const { out } = cli;
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
    .action(async (options: CreateOptions) => {
      if (options.globalAdmin && (options.tenant !== undefined || options.role.length > 0)) {
        throw usageError('conflictingOptions', '--global-admin takes no --tenant or --role');
      }
      if (!options.globalAdmin && options.tenant === undefined) {
        throw usageError('missingOption', 'say --tenant <idOrSlug>, or --global-admin');
      }
      if (options.password !== undefined && options.passwordStdin) {
        throw usageError('conflictingOptions', 'say --password or --password-stdin, not both');
      }
      if (options.password !== undefined) {
        out.error('warning: --password is visible to other users of this machine; prefer --password-stdin');
      }
      const password = options.passwordStdin ? await readFirstLine(cli.stdin) : options.password;
      const secret = password === undefined ? {} : { password };
      const created = await cli.operations(options, (run) =>
        options.globalAdmin
          ? run(createAdmin, { email: options.email, ...secret })
          : run(createUser, {
              tenant: options.tenant,
              email: options.email,
              ...secret,
              ...(options.role.length > 0 ? { roles: options.role } : {}),
            }),
      );
      if (options.json) return out.json(created);
      printUsers(cli, [created.user]);
      if (created.setupToken) {
        out.line(`set-up token: ${created.setupToken}`);
        out.error(created.warning ?? '');
      }
    });
}

function userCommands(users: Command, cli: CliContext): void {
  const { out } = cli;
  command(users, 'list', 'list the users of a tenant (without --tenant: the global admins)')
    .option('--tenant <idOrSlug>', 'the tenant')
    .action(async (options: TenantOption) => {
      const list = await cli.operations(options, async (run) =>
        options.tenant === undefined
          ? (await run(listAdmins, {})).admins
          : (await run(listUsers, { tenant: options.tenant })).users,
      );
      if (options.json) return out.json(list);
      printUsers(cli, list);
    });
  command(users, 'deactivate', 'deactivate a user: its sessions end at once')
    .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
    .argument('<user>', 'email or id')
    .action(async (user: string, options: TenantOption) => {
      const updated = await cli.operations(options, (run) =>
        run(updateUser, { tenant: options.tenant, user, status: 'inactive' }),
      );
      if (options.json) return out.json(updated);
      out.line(`${updated.email}: ${updated.status}`);
    });
  command(users, 'reset-password', 'end the user’s sessions and print a one-time set-up token')
    .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
    .argument('<user>', 'email or id')
    .action(async (user: string, options: TenantOption) => {
      const reset = await cli.operations(options, (run) =>
        run(resetPassword, { tenant: options.tenant, user }),
      );
      if (options.json) return out.json(reset);
      out.line(`set-up token: ${reset.setupToken}`);
      out.error(reset.warning);
    });
}

function roleCommands(program: Command, cli: CliContext): void {
  const { out } = cli;
  const roles = program.command('roles').description('roles of a tenant');
  command(roles, 'list', 'list the roles of a tenant and their permissions')
    .requiredOption('--tenant <idOrSlug>', 'the tenant (required)')
    .action(async (options: TenantOption) => {
      const list = await cli.operations(options, (run) => run(listRoles, { tenant: options.tenant }));
      if (options.json) return out.json(list.roles);
      out.table(list.roles, ['name', 'builtIn', 'default', 'permissions']);
    });
}
