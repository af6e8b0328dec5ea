import { spawn } from 'node:child_process';
import { BIN, type CliResult } from './cli.js';

export interface TimedCliResult extends CliResult {
  /** The process did not exit by itself within the time limit and was killed. */
  readonly timedOut: boolean;
  readonly ms: number;
}

/**
 * Runs the built binary in a child process that must exit by itself within `timeoutMs`;
 * otherwise it is killed and `timedOut` is set. Build first (`npm run build`).
 */
export function spawnCliWithin(
  args: string[],
  env: Record<string, string | undefined>,
  timeoutMs: number,
): Promise<TimedCliResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, TENANTRY_CONFIG: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, timedOut, ms: Date.now() - started });
    });
  });
}
