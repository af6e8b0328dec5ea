import { type Command, CommanderError } from 'commander';
import type { TenantryConfig } from '../config/config-schema.js';
import type { OperationRunner } from './engine-client.js';
import type { Output } from './output.js';

export const ExitCode = { OK: 0, FAILURE: 1, USAGE: 2 } as const;

/** Options every command that opens the engine takes. */
export interface GlobalOptions {
  config?: string;
  json?: boolean;
}

/** What a command file gets to register its commands: the shared I/O and the engine's runner. */
export interface CliContext {
  readonly out: Output;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly stdin: NodeJS.ReadableStream;
  readonly io: { readonly shutdownSignal?: Promise<unknown> | undefined };
  /** The directory relative paths are read from. */
  readonly cwd: string;
  /** True when stderr is a terminal: long work draws a progress bar there. */
  readonly interactive: boolean;
  /** The environment the command reads (the process's, unless a test gives its own). */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The configuration, with `--config` and the command's overrides. */
  config(options: GlobalOptions, overrides?: { port?: number }): TenantryConfig;
  /** Runs `fn` with the operation runner (in process, or through the server's control socket). */
  operations<T>(options: GlobalOptions, fn: (run: OperationRunner) => Promise<T>): Promise<T>;
  /** The exit code, when a command ends without an error but must not exit 0. */
  setExitCode(code: number): void;
}

/** Adds `--config`; with `json`, `--json` too. */
export function command(parent: Command, name: string, description: string, json = true): Command {
  const added = parent
    .command(name)
    .description(description)
    .option(
      '--config <file>',
      'config file (default: tenantry.config.yaml, .yml or .json in the current directory)',
    );
  return json ? added.option('--json', 'print JSON') : added;
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export function port(value: string): number {
  if (!/^\d{1,5}$/.test(value) || Number(value) > 65_535)
    throw new CommanderError(ExitCode.USAGE, 'tenantry.invalidNumber', `not a port (0 to 65535): ${value}`);
  return Number(value);
}

/** At least 1: a count, a limit or a timeout of 0 means nothing useful (a lock timeout of 0 is none). */
export function positiveInteger(value: string): number {
  if (!/^\d{1,9}$/.test(value) || Number(value) < 1)
    throw new CommanderError(
      ExitCode.USAGE,
      'tenantry.invalidNumber',
      `not a whole number of at least 1: ${value}`,
    );
  return Number(value);
}

/** A usage error (exit 2): contradictory or missing flags change nothing. */
export function usageError(code: string, message: string): CommanderError {
  return new CommanderError(ExitCode.USAGE, `tenantry.${code}`, message);
}
