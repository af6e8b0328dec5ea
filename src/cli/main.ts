import { Command, CommanderError, Option } from 'commander';
import type { TenantryConfig } from '../config/config-schema.js';
import { loadConfig } from '../config/load-config.js';
import { DatabaseTooNewError } from '../db/migrator.js';
import { DataDirInUseError, openDatabase } from '../db/open-database.js';
import { SchemaDriftError } from '../entities/entity-schema.js';
import { ConfigError, isTenantryError } from '../errors.js';
import { prepareDatabase } from '../isolation/entity-storage.js';
import { parseConfigPath } from '../tenants/tenant-registry.js';
import { cliActor, withOperations } from './engine-client.js';
import { identityCommands } from './identity-commands.js';
import { migrateCommand } from './migrate-command.js';
import { createOutput, type Output } from './output.js';

export const ExitCode = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

interface GlobalOptions {
  config?: string;
  json?: boolean;
}

interface TenantJson {
  id: string;
  slug: string;
  name: string;
  status: string;
  isolation: string;
  hosts: string[];
}

function printTenant(out: Output, tenant: TenantJson): void {
  out.line(`id:        ${tenant.id}`);
  out.line(`slug:      ${tenant.slug}`);
  out.line(`name:      ${tenant.name}`);
  out.line(`status:    ${tenant.status}`);
  out.line(`isolation: ${tenant.isolation}`);
  out.line(`hosts:     ${tenant.hosts.length > 0 ? tenant.hosts.join(', ') : '-'}`);
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

function port(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65_535)
    throw new CommanderError(ExitCode.USAGE, 'tenantry.invalidNumber', `not a port (0 to 65535): ${value}`);
  return Number(value);
}

/** At least 1: a count, a limit or a timeout of 0 means nothing useful (a lock timeout of 0 is none). */
function positiveInteger(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1)
    throw new CommanderError(
      ExitCode.USAGE,
      'tenantry.invalidNumber',
      `not a whole number of at least 1: ${value}`,
    );
  return Number(value);
}

export interface MainIo {
  readonly stdout?: NodeJS.WritableStream;
  readonly stderr?: NodeJS.WritableStream;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
  /** Where `--password-stdin` reads from (default: the process's standard input). */
  readonly stdin?: NodeJS.ReadableStream;
  /** Serve only: resolves when the process should shut down (default: SIGTERM or SIGINT). */
  readonly shutdownSignal?: Promise<unknown>;
}

/** Runs the CLI; returns the exit code (0 success, 1 failure, 2 usage or config error). */
export async function main(argv: readonly string[], io: MainIo = {}): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const out = createOutput(stdout, stderr);
  let exitCode: number = ExitCode.OK;

  const config = (options: GlobalOptions, overrides: { port?: number } = {}): TenantryConfig =>
    loadConfig({
      ...(options.config === undefined ? {} : { file: options.config }),
      ...(io.env ? { env: io.env } : {}),
      ...(io.cwd ? { cwd: io.cwd } : {}),
      overrides,
    });

  const program = new Command('tenantry')
    .description('Multi-tenancy for TypeScript backends on PostgreSQL')
    .version('0.1.0')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => stdout.write(text),
      writeErr: (text) => stderr.write(text),
    })
    .showHelpAfterError('(run with --help for usage)');

  const withConfigOption = (command: Command) =>
    command.option(
      '--config <file>',
      'config file (default: tenantry.config.yaml, .yml or .json in the current directory)',
    );

  withConfigOption(
    program
      .command('init-db')
      .description('apply the control-plane migrations, create the runtime role and the entity tables'),
  ).action(async (options: GlobalOptions) => {
    const cfg = config(options);
    let db: Awaited<ReturnType<typeof openDatabase>>;
    try {
      db = await openDatabase(cfg);
    } catch (error) {
      if (error instanceof DataDirInUseError) {
        out.line(
          'the embedded database is held by a running server, which migrated it at start: nothing to do',
        );
        return;
      }
      throw error;
    }
    try {
      const report = await prepareDatabase(db, cfg, false);
      if (report.applied.length === 0) out.line(`control plane is up to date (version ${report.to})`);
      for (const step of report.applied) out.line(`applied ${step.version}: ${step.name}`);
      out.line(`runtime role ${cfg.database.runtimeRole} and entity tables ready`);
    } finally {
      await db.close();
    }
  });

  withConfigOption(program.command('serve').description('run the HTTP server'))
    .option('--port <n>', 'port to listen on (0: any free port)', port)
    .action(async (options: GlobalOptions & { port?: number }) => {
      const overrides = options.port === undefined ? {} : { port: options.port };
      const cfg = config(options, overrides);
      // Loaded here: the other commands need neither Fastify nor the routes.
      const { startServer } = await import('../server.js');
      // SIGHUP reads the same file again (like nginx, each process on its own signal). One that
      // comes while the server starts is applied once it listens.
      let server: Awaited<ReturnType<typeof startServer>> | undefined;
      let hangupWhileStarting = false;
      const reload = () => {
        if (server) void server.reload(() => config(options, overrides));
        else hangupWhileStarting = true;
      };
      process.on('SIGHUP', reload);
      try {
        server = await startServer({ config: cfg, notice: (message) => stderr.write(`${message}\n`) });
        stderr.write(
          `tenantry listening on ${server.url} (${cfg.database.url ? 'PostgreSQL' : `embedded database in ${cfg.dataDir}`})\n`,
        );
        if (hangupWhileStarting) reload();
        await (io.shutdownSignal ??
          new Promise((resolve) => {
            process.once('SIGTERM', resolve);
            process.once('SIGINT', resolve);
          }));
        await server.close();
      } finally {
        process.off('SIGHUP', reload);
      }
    });

  const tenants = program.command('tenants').description('manage tenants');
  const tenantCommand = (name: string, description: string) =>
    withConfigOption(tenants.command(name).description(description)).option('--json', 'print JSON');

  tenantCommand('create', 'create a tenant and print its API key (shown once)')
    .argument('<name>', 'display name')
    .argument('<slug>', 'DNS label: lowercase a-z, 0-9 and -, 3 to 63 characters')
    .option('--host <host>', 'a hostname of the tenant (repeatable)', collect, [])
    .addOption(
      new Option('--isolation <level>', 'where its rows live').choices(['row', 'schema', 'database']),
    )
    .option('--server <name>', 'database server of a database tenant (default: the one with the fewest)')
    .option('--plan <plan>', 'its plan (from plans in the config file)')
    .option('--admin-email <email>', 'its first administrator: a one-time set-up token is printed')
    .action(
      async (
        name: string,
        slug: string,
        options: GlobalOptions & {
          host: string[];
          isolation?: string;
          server?: string;
          plan?: string;
          adminEmail?: string;
        },
      ) => {
        const input = {
          name,
          slug,
          ...(options.host.length > 0 ? { hosts: options.host } : {}),
          ...(options.isolation ? { isolation: options.isolation } : {}),
          ...(options.server ? { server: options.server } : {}),
          ...(options.plan ? { plan: options.plan } : {}),
        };
        const created = (await withOperations(config(options), (run) =>
          run('tenants.create', {
            input,
            ...(options.adminEmail === undefined ? {} : { adminEmail: options.adminEmail }),
          }),
        )) as {
          tenant: TenantJson;
          apiKey: { keyId: string; key: string; warning: string };
          admin?: { user: { email: string }; setupToken?: string; warning?: string };
        };
        if (options.json) return out.json(created);
        printTenant(out, created.tenant);
        out.line(`api key:   ${created.apiKey.key}`);
        out.error(created.apiKey.warning);
        if (created.admin?.setupToken) {
          out.line(`admin:     ${created.admin.user.email}`);
          out.line(`set-up token: ${created.admin.setupToken}`);
          out.error(created.admin.warning ?? '');
        }
      },
    );

  tenantCommand('list', 'list tenants (active only unless asked)')
    .option('--include-inactive', 'include inactive tenants')
    .option('--include-deleted', 'include deleted tenants')
    .action(async (options: GlobalOptions & { includeInactive?: boolean; includeDeleted?: boolean }) => {
      const all: TenantJson[] = await withOperations(config(options), async (run) => {
        const rows: TenantJson[] = [];
        let after: string | null = null;
        do {
          const page = (await run('tenants.list', {
            includeInactive: options.includeInactive === true,
            includeDeleted: options.includeDeleted === true,
            limit: 1000,
            ...(after ? { after } : {}),
          })) as { tenants: TenantJson[]; next: string | null };
          rows.push(...page.tenants);
          after = page.next;
        } while (after);
        return rows;
      });
      if (options.json) return out.json(all);
      out.table(all as unknown as Record<string, unknown>[], [
        'id',
        'slug',
        'name',
        'status',
        'isolation',
        'hosts',
      ]);
    });

  const single = [
    ['show', 'tenants.show', 'show a tenant'],
    ['activate', 'tenants.activate', 'activate a tenant'],
    ['deactivate', 'tenants.deactivate', 'deactivate a tenant: it stops resolving at once'],
  ] as const;
  for (const [name, operation, description] of single) {
    tenantCommand(name, description)
      .argument('<idOrSlug>')
      .action(async (idOrSlug: string, options: GlobalOptions) => {
        const tenant = (await withOperations(config(options), (run) =>
          run(operation, { idOrSlug }),
        )) as TenantJson;
        if (options.json) return out.json(tenant);
        printTenant(out, tenant);
      });
  }

  tenantCommand('delete', 'delete a tenant (soft): keys revoked, hosts released; --purge removes its data')
    .argument('<idOrSlug>')
    .option('--purge', 'also drop its rows, schema or database, keys and record (cannot be undone)')
    .action(async (idOrSlug: string, options: GlobalOptions & { purge?: boolean }) => {
      const tenant = (await withOperations(config(options), (run) =>
        run('tenants.delete', { idOrSlug, purge: options.purge === true }),
      )) as TenantJson;
      if (options.json) return out.json(tenant);
      printTenant(out, tenant);
      if (options.purge) out.line('purged: its data, keys and record are gone (the audit trail stays)');
    });

  tenantCommand(
    'repair',
    'finish a tenant a crash left half done (provisioning or purge), or check its tables',
  )
    .argument('<idOrSlug>')
    .action(async (idOrSlug: string, options: GlobalOptions) => {
      const report = (await withOperations(config(options), (run) =>
        run('tenants.repair', { idOrSlug }),
      )) as {
        tenant: TenantJson;
        action: string;
        detail: string;
        apiKey?: { key: string; warning: string };
        differences?: string[];
      };
      if (options.json) out.json(report);
      else {
        printTenant(out, report.tenant);
        out.line(`repair:    ${report.action}: ${report.detail}`);
        if (report.apiKey) {
          out.line(`api key:   ${report.apiKey.key}`);
          out.error(report.apiKey.warning);
        }
      }
      if (report.differences && report.differences.length > 0) exitCode = ExitCode.FAILURE;
    });

  const tenantConfig = tenants
    .command('config')
    .description("a tenant's configuration (plan, features, limits, branding, settings)");
  withConfigOption(
    tenantConfig.command('get').description('show the effective configuration, or one value of it'),
  )
    .option('--json', 'print JSON')
    .argument('<idOrSlug>')
    .argument('[path]', 'plan, features, limits.<name>, branding.<name>, settings.<key>...')
    .action(async (idOrSlug: string, path: string | undefined, options: GlobalOptions) => {
      const view = (await withOperations(config(options), (run) =>
        run('tenants.config.get', { idOrSlug }),
      )) as {
        plan: string | null;
        overrides: Record<string, unknown>;
        effective: Record<string, unknown>;
      };
      if (path === undefined)
        return options.json ? out.json(view) : out.line(JSON.stringify(view.effective, null, 2));
      const value = valueAt(view.effective, parseConfigPath(path));
      if (value === undefined) {
        out.error(`${path} is not set (neither by the tenant nor by its plan)`);
        exitCode = ExitCode.FAILURE;
        return;
      }
      out.line(options.json || typeof value !== 'string' ? JSON.stringify(value) : value);
    });
  withConfigOption(tenantConfig.command('set').description('override one value (JSON, or a plain string)'))
    .option('--json', 'print JSON')
    .argument('<idOrSlug>')
    .argument('<path>')
    .argument('<value>')
    .action(async (idOrSlug: string, path: string, raw: string, options: GlobalOptions) => {
      const view = await withOperations(config(options), (run) =>
        run('tenants.config.change', { idOrSlug, set: { [path]: parseValue(raw) } }),
      );
      if (options.json) return out.json(view);
      out.line(`${path} set`);
    });
  withConfigOption(
    tenantConfig.command('unset').description("remove an override: its plan's value applies again"),
  )
    .option('--json', 'print JSON')
    .argument('<idOrSlug>')
    .argument('<path>')
    .action(async (idOrSlug: string, path: string, options: GlobalOptions) => {
      const view = await withOperations(config(options), (run) =>
        run('tenants.config.change', { idOrSlug, unset: [path] }),
      );
      if (options.json) return out.json(view);
      out.line(`${path} unset`);
    });

  tenantCommand('regenerate-key', 'revoke the tenant’s keys and print a new one (shown once)')
    .argument('<idOrSlug>')
    .action(async (idOrSlug: string, options: GlobalOptions) => {
      const issued = (await withOperations(config(options), (run) =>
        run('tenants.regenerateKey', { idOrSlug }),
      )) as {
        key: string;
        warning: string;
      };
      if (options.json) return out.json(issued);
      out.line(issued.key);
      out.error(issued.warning);
    });

  const hosts = tenants.command('hosts').description('hostnames of a tenant');
  for (const [name, operation] of [
    ['add', 'tenants.hosts.add'],
    ['remove', 'tenants.hosts.remove'],
  ] as const) {
    withConfigOption(hosts.command(name).description(`${name} a hostname`))
      .option('--json', 'print JSON')
      .argument('<idOrSlug>')
      .argument('<host>')
      .action(async (idOrSlug: string, host: string, options: GlobalOptions) => {
        const tenant = (await withOperations(config(options), (run) =>
          run(operation, { idOrSlug, host }),
        )) as TenantJson;
        if (options.json) return out.json(tenant);
        printTenant(out, tenant);
      });
  }

  const keys = tenants.command('keys').description('API keys of a tenant');
  withConfigOption(keys.command('list').description('list keys (never their secrets)'))
    .option('--json', 'print JSON')
    .option('--include-revoked', 'include revoked keys')
    .argument('<idOrSlug>')
    .action(async (idOrSlug: string, options: GlobalOptions & { includeRevoked?: boolean }) => {
      const list = (await withOperations(config(options), (run) =>
        run('tenants.keys.list', { idOrSlug, includeRevoked: options.includeRevoked === true }),
      )) as Record<string, unknown>[];
      if (options.json) return out.json(list);
      out.table(list, ['keyId', 'name', 'createdAt', 'lastUsedAt', 'revokedAt', 'expiresAt']);
    });
  withConfigOption(keys.command('create').description('issue a further key, keeping the others (shown once)'))
    .option('--json', 'print JSON')
    .option('--name <name>', 'what the key is for')
    .option('--expires <date-time>', 'when it stops working (ISO 8601 with Z or an offset, or a date)')
    .option('--permission <permission>', 'what it may do (repeatable; default: everything)', collect, [])
    .argument('<idOrSlug>')
    .action(
      async (
        idOrSlug: string,
        options: GlobalOptions & { name?: string; expires?: string; permission: string[] },
      ) => {
        const issued = (await withOperations(config(options), (run) =>
          run('tenants.keys.create', {
            idOrSlug,
            ...(options.name === undefined ? {} : { name: options.name }),
            ...(options.expires === undefined ? {} : { expiresAt: options.expires }),
            ...(options.permission.length > 0 ? { permissions: options.permission } : {}),
          }),
        )) as { keyId: string; key: string; warning: string };
        if (options.json) return out.json(issued);
        out.line(issued.key);
        out.error(issued.warning);
      },
    );
  withConfigOption(keys.command('revoke').description('revoke one key: it stops working at once'))
    .option('--json', 'print JSON')
    .argument('<idOrSlug>')
    .argument('<keyId>', 'the key id a listing shows')
    .action(async (idOrSlug: string, keyId: string, options: GlobalOptions) => {
      const info = (await withOperations(config(options), (run) =>
        run('tenants.keys.revoke', { idOrSlug, keyId }),
      )) as { keyId: string; revokedAt: string };
      if (options.json) return out.json(info);
      out.line(`revoked ${info.keyId} at ${info.revokedAt}`);
    });

  withConfigOption(
    program
      .command('migrate')
      .description(
        'bring every tenant’s tables to the declared entities (resumable; tenants already current are skipped)',
      ),
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
    .action(
      async (
        options: GlobalOptions & {
          plan?: boolean;
          concurrency?: number;
          canary?: number;
          allowDestructive?: boolean;
          wait?: boolean;
          lockTimeout?: number;
        },
      ) => {
        exitCode = await migrateCommand(config(options), options, {
          out,
          stderr,
          context: { actor: cliActor() },
          interactive: (stderr as NodeJS.WriteStream).isTTY === true,
        });
      },
    );

  identityCommands(program, { withConfigOption, config, out, stdin: io.stdin ?? process.stdin });

  const servers = program.command('servers').description('PostgreSQL servers that hold database tenants');
  withConfigOption(servers.command('list').description('list servers and their tenant counts'))
    .option('--json', 'print JSON')
    .action(async (options: GlobalOptions) => {
      const list = (await withOperations(config(options), (run) => run('servers.list'))) as Record<
        string,
        unknown
      >[];
      if (options.json) return out.json(list);
      out.table(list, ['name', 'url', 'tenants', 'createdAt']);
    });
  withConfigOption(
    servers.command('add').description('add a server (it must answer and may create databases)'),
  )
    .option('--json', 'print JSON')
    .option('--admin-url <url>', 'owner connection string, when the runtime one cannot create databases')
    .argument('<name>')
    .argument('<url>', 'connection string for the runtime role (postgres://...)')
    .action(async (name: string, url: string, options: GlobalOptions & { adminUrl?: string }) => {
      const added = (await withOperations(config(options), (run) =>
        run('servers.add', { name, url, ...(options.adminUrl ? { adminUrl: options.adminUrl } : {}) }),
      )) as Record<string, unknown>;
      if (options.json) return out.json(added);
      out.line(`added server ${name} (${String(added.url)})`);
    });
  withConfigOption(servers.command('remove').description('remove a server that holds no tenant'))
    .option('--json', 'print JSON')
    .argument('<name>')
    .action(async (name: string, options: GlobalOptions) => {
      const removed = await withOperations(config(options), (run) => run('servers.remove', { name }));
      if (options.json) return out.json(removed);
      out.line(`removed server ${name}`);
    });

  withConfigOption(program.command('audit').description('show audit entries, newest first'))
    .option('--json', 'print JSON')
    .option('--tenant <idOrSlug>', 'only this tenant')
    .option('--action <action>', 'only this action (or its prefix, e.g. tenant)')
    .option('--actor <actor>', 'only this actor (e.g. cli:alice, api-key:<id>)')
    .option('--since <time>', 'only entries at or after this ISO 8601 time')
    .option('--until <time>', 'only entries before this ISO 8601 time')
    .option('--limit <n>', 'how many entries (default 100)', positiveInteger)
    .action(
      async (
        options: GlobalOptions & {
          tenant?: string;
          action?: string;
          actor?: string;
          since?: string;
          until?: string;
          limit?: number;
        },
      ) => {
        const page = (await withOperations(config(options), (run) =>
          run('audit.list', {
            ...(options.tenant ? { tenant: options.tenant } : {}),
            ...(options.action ? { action: options.action } : {}),
            ...(options.actor ? { actor: options.actor } : {}),
            ...(options.since ? { since: options.since } : {}),
            ...(options.until ? { until: options.until } : {}),
            ...(options.limit ? { limit: options.limit } : {}),
          }),
        )) as { entries: Record<string, unknown>[] };
        if (options.json) return out.json(page.entries);
        out.table(page.entries, ['at', 'actor', 'action', 'outcome', 'tenantId', 'target', 'clientAddress']);
      },
    );

  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    exitCode = reportError(error, out);
  }
  return exitCode;
}

/** A config value from the command line: JSON when it parses (50, true, ["a"]), else the text. */
function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function valueAt(target: Record<string, unknown>, path: readonly string[]): unknown {
  let value: unknown = target;
  for (const part of path) {
    if (!value || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function reportError(error: unknown, out: Output): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return ExitCode.OK;
    // Commander prints its own parse errors; ours (tenantry.*) are printed here.
    if (error.code.startsWith('tenantry.')) out.error(`error: ${error.message}`);
    return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  }
  if (error instanceof ConfigError) {
    out.error(`config error: ${error.message}`);
    return ExitCode.USAGE;
  }
  if (isTenantryError(error)) {
    // Why the database could not be reached (refused, unknown host, shutting down) is the
    // operator's next clue: the caller of an HTTP route never sees it, a person at the CLI does.
    const cause =
      error.code === 'unavailable' && error.cause instanceof Error ? ` (${error.cause.message})` : '';
    out.error(`error (${error.code}): ${error.message}${cause}`);
    // A declaration that cannot be migrated is a config error: fix the config.
    return error.code === 'validation_failed' && error.field === 'entities'
      ? ExitCode.USAGE
      : ExitCode.FAILURE;
  }
  if (error instanceof SchemaDriftError) {
    out.error(`schema error: ${error.message}`);
    return ExitCode.USAGE;
  }
  if (error instanceof DatabaseTooNewError) {
    out.error(`error: ${error.message}`);
    return ExitCode.FAILURE;
  }
  out.error(`error: ${error instanceof Error ? error.message : String(error)}`);
  return ExitCode.FAILURE;
}
