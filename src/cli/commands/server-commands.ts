import type { Command } from 'commander';
import type { Database } from '../../db/database.js';
import { ensureRuntimeLogin } from '../../db/roles.js';
import { DataDirInUseError, openDatabase } from '../../engine/open-database.js';
import { prepareDatabase } from '../../isolation/entity-storage.js';
import { type CliContext, command, type GlobalOptions, port, usageError } from '../cli-context.js';

interface InitDbOptions extends GlobalOptions {
  runtimeLogin?: string;
  passwordStdin?: boolean;
}

/** The first line of standard input, without its line ending. */
async function readFirstLine(stdin: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  return text.split(/\r?\n/, 1)[0] ?? '';
}

async function createLogin(
  cli: CliContext,
  db: Database,
  runtimeRole: string,
  options: InitDbOptions,
): Promise<void> {
  const login = options.runtimeLogin!;
  if (db.driver === 'pglite') {
    cli.out.error('the embedded database has no logins: --runtime-login is for PostgreSQL');
    return;
  }
  const password = options.passwordStdin ? await readFirstLine(cli.stdin) : undefined;
  const done = await ensureRuntimeLogin(db.owner, login, runtimeRole, password);
  cli.out.line(`runtime login ${login} ${done}: a member of ${runtimeRole}, nothing else`);
  cli.out.line(`set DATABASE_URL to log in as ${login}, and DATABASE_ADMIN_URL as the owner`);
}

/** `tenantry init-db` and `tenantry serve`: the database made ready, and the HTTP server. */
export function serverCommands(program: Command, cli: CliContext): void {
  const { out } = cli;
  command(
    program,
    'init-db',
    'apply the control-plane migrations, create the runtime role and the entity tables',
    false,
  )
    .option(
      '--runtime-login <name>',
      'also create the login DATABASE_URL should use: a member of the runtime role and nothing else',
    )
    .option(
      '--password-stdin',
      'with --runtime-login: read its password from the first line of standard input',
    )
    .action(async (options: InitDbOptions) => {
      if (options.runtimeLogin !== undefined && !/^[a-z][a-z0-9_]{0,62}$/.test(options.runtimeLogin)) {
        throw usageError(
          'invalidName',
          'a login name is a-z, 0-9 and _, starting with a letter, at most 63 characters',
        );
      }
      if (options.passwordStdin && options.runtimeLogin === undefined) {
        throw usageError('missingOption', '--password-stdin sets the password of --runtime-login <name>');
      }
      const config = cli.config(options);
      let db: Awaited<ReturnType<typeof openDatabase>>;
      try {
        db = await openDatabase(config);
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
        const report = await prepareDatabase(db, config, false);
        if (report.applied.length === 0) out.line(`control plane is up to date (version ${report.to})`);
        for (const step of report.applied) out.line(`applied ${step.version}: ${step.name}`);
        out.line(`runtime role ${config.database.runtimeRole} and entity tables ready`);
        if (options.runtimeLogin !== undefined)
          await createLogin(cli, db, config.database.runtimeRole, options);
      } finally {
        await db.close();
      }
    });

  command(program, 'serve', 'run the HTTP server', false)
    .option('--port <n>', 'port to listen on (0: any free port)', port)
    .action(async (options: GlobalOptions & { port?: number }) => {
      const overrides = options.port === undefined ? {} : { port: options.port };
      const config = cli.config(options, overrides);
      // Loaded here: the other commands need neither Fastify nor the routes.
      const { startServer } = await import('../../server.js');
      // SIGHUP reads the same file again (like nginx, each process on its own signal). One that
      // comes while the server starts is applied once it listens.
      let server: Awaited<ReturnType<typeof startServer>> | undefined;
      let hangupWhileStarting = false;
      const reload = () => {
        if (server) void server.reload(() => cli.config(options, overrides));
        else hangupWhileStarting = true;
      };
      process.on('SIGHUP', reload);
      try {
        server = await startServer({ config, notice: (message) => cli.stderr.write(`${message}\n`) });
        cli.stderr.write(
          `tenantry listening on ${server.url} (${config.database.url ? 'PostgreSQL' : `embedded database in ${config.dataDir}`})\n`,
        );
        if (hangupWhileStarting) reload();
        await (cli.io.shutdownSignal ??
          new Promise((resolve) => {
            process.once('SIGTERM', resolve);
            process.once('SIGINT', resolve);
          }));
        await server.close();
      } finally {
        process.off('SIGHUP', reload);
      }
    });
}
