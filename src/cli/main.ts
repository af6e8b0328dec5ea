import { Command, CommanderError } from 'commander';
import { loadConfig } from '../config/load-config.js';
import { DatabaseUnreachableError } from '../db/connection-failure.js';
import { DatabaseTooNewError } from '../db/migrator.js';
import { SchemaDriftError } from '../entities/entity-schema.js';
import { ConfigError, isTenantryError } from '../errors.js';
import { TENANTRY_VERSION } from '../version.js';
import { type CliContext, ExitCode } from './cli-context.js';
import { adoptCommand } from './commands/adopt-command.js';
import { backupCommands } from './commands/backup-commands.js';
import { clientCommands } from './commands/client-commands.js';
import { doctorCommand } from './commands/doctor-command.js';
import { fleetCommands } from './commands/fleet-commands.js';
import { identityCommands } from './commands/identity-commands.js';
import { jobCommands } from './commands/job-commands.js';
import { keyCommands } from './commands/key-commands.js';
import { moveCommands } from './commands/move-commands.js';
import { serverCommands } from './commands/server-commands.js';
import { tenantCommands } from './commands/tenant-commands.js';
import { tenantConfigCommands } from './commands/tenant-config-commands.js';
import { withOperations } from './engine-client.js';
import { createOutput, type Output } from './output.js';

export { ExitCode };

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
  const cli: CliContext = {
    out,
    stdout,
    stderr,
    stdin: io.stdin ?? process.stdin,
    io,
    env: io.env ?? process.env,
    cwd: io.cwd ?? process.cwd(),
    interactive: (stderr as NodeJS.WriteStream).isTTY === true,
    config: (options, overrides = {}) =>
      loadConfig({
        ...(options.config === undefined ? {} : { file: options.config }),
        ...(io.env ? { env: io.env } : {}),
        ...(io.cwd ? { cwd: io.cwd } : {}),
        overrides,
      }),
    operations: (options, fn) => withOperations(cli.config(options), fn),
    setExitCode: (code) => {
      exitCode = code;
    },
  };

  const program = new Command('tenantry')
    .description('Multi-tenancy for TypeScript backends on PostgreSQL')
    .version(TENANTRY_VERSION)
    .exitOverride()
    .configureOutput({ writeOut: (text) => stdout.write(text), writeErr: (text) => stderr.write(text) })
    .showHelpAfterError('(run with --help for usage)');
  serverCommands(program, cli);
  const tenants = program.command('tenants').description('manage tenants');
  tenantCommands(tenants, cli);
  tenantConfigCommands(tenants, cli);
  backupCommands(tenants, cli);
  moveCommands(tenants, cli);
  keyCommands(tenants, cli);
  fleetCommands(program, cli);
  identityCommands(program, cli);
  clientCommands(program, cli);
  jobCommands(program, cli);
  adoptCommand(program, cli);
  doctorCommand(program, cli);

  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    exitCode = reportError(error, out);
  }
  return exitCode;
}

/** The message and exit code of whatever a command threw: the same in process and through the control socket. */
export function reportError(error: unknown, out: Output): number {
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
    // DatabaseUnreachableError says it in words already.
    const cause =
      error.code === 'unavailable' &&
      error.cause instanceof Error &&
      !(error instanceof DatabaseUnreachableError)
        ? ` (${error.cause.message})`
        : '';
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
