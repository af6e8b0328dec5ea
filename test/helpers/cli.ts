import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { main } from '../../src/cli/main.js';
import { createDatabase } from './postgres.js';

export const BIN = new URL('../../bin/tenantry.js', import.meta.url).pathname;

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** A stream that keeps what is written to it, as text. */
export function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join('') };
}

/** Runs the CLI in this process (fast, same code path as the binary). */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined>,
  input = '',
): Promise<CliResult> {
  const out = sink();
  const err = sink();
  const stdin = Readable.from([input]);
  const code = await main(args, { stdout: out.stream, stderr: err.stream, env, stdin });
  return { code, stdout: out.text(), stderr: err.text() };
}

/** Runs the built binary in a child process (for what is about processes: locks, sockets, signals). */
export function spawnCli(args: string[], env: Record<string, string | undefined>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, TENANTRY_CONFIG: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A deployment the CLI works on: a config file, a database of its own (or a data directory), prepared by init-db. */
export interface CliDeployment {
  readonly env: Record<string, string | undefined>;
  readonly dir: string;
  close(): Promise<void>;
}

export async function cliDeployment(
  driver: 'pglite' | 'postgres',
  configYaml: string,
  extraEnv: Record<string, string | undefined> = {},
): Promise<CliDeployment> {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-cli-'));
  const env: Record<string, string | undefined> = {
    ...extraEnv,
    TENANTRY_CONFIG: join(dir, 'tenantry.config.yaml'),
  };
  writeFileSync(env.TENANTRY_CONFIG!, configYaml);
  const database = driver === 'postgres' ? await createDatabase() : undefined;
  if (database) env.DATABASE_URL = database.url;
  else env.TENANTRY_DATA_DIR = join(dir, 'data');
  const close = async () => {
    await database?.drop();
    rmSync(dir, { recursive: true, force: true });
  };
  const prepared = await runCli(['init-db'], env);
  if (prepared.code !== 0) {
    await close();
    throw new Error(`init-db failed: ${prepared.stderr}`);
  }
  return { env, dir, close };
}
