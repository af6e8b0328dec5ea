import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ChildServer {
  readonly url: string;
  readonly pid: number;
  /** SIGTERM, then SIGKILL after 10 s; resolves when the process is gone. */
  stop(): Promise<void>;
  /** Sends a message over the IPC channel (`ipc` option) and resolves with the child's answer. */
  ask(message: object): Promise<unknown>;
}

export interface ChildServerOptions {
  /** A program that runs Node (like valgrind), with its own arguments, and a longer start-up. */
  readonly wrapper?: { readonly command: string; readonly args: readonly string[]; readonly startMs: number };
  /** Opens an IPC channel to the child (for `ask`). */
  readonly ipc?: boolean;
}

const TSX_LOADER = import.meta.resolve('tsx');
const live = new Set<ChildServer>();

/** Stops every child server still running (Ctrl-C). */
export async function stopAllChildServers(): Promise<void> {
  await Promise.all([...live].map((child) => child.stop()));
}

/** Path of a script in bench/servers. */
export function serverScript(name: string): string {
  return fileURLToPath(new URL(`../servers/${name}`, import.meta.url));
}

/**
 * Starts a server script in its own Node process (TypeScript through tsx) and waits for its
 * `READY <url>` line, so the load generator never shares the server's event loop.
 */
export function startChildServer(
  script: string,
  env: Readonly<Record<string, string | undefined>>,
  nodeArgs: readonly string[] = [],
  options: ChildServerOptions = {},
): Promise<ChildServer> {
  const { wrapper } = options;
  return new Promise((resolve, reject) => {
    // JavaScript (the built server) runs as production runs it; TypeScript through tsx.
    const loader = script.endsWith('.ts') ? ['--import', TSX_LOADER] : [];
    const node = [process.execPath, ...nodeArgs, ...loader, script];
    const [command, ...args] = wrapper ? [wrapper.command, ...wrapper.args, ...node] : node;
    const child: ChildProcess = spawn(command!, args, {
      env: { ...process.env, ...env },
      stdio: options.ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    });
    const startMs = wrapper?.startMs ?? 30_000;
    let output = '';
    let ready = false;
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} did not start within ${startMs / 1000} s:\n${output}`));
    }, startMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (ready) return;
      const match = /^READY (\S+)$/m.exec(output);
      if (!match) return;
      ready = true;
      clearTimeout(timer);
      const server: ChildServer = {
        url: match[1]!,
        pid: child.pid!,
        async stop() {
          live.delete(server);
          if (child.exitCode !== null || child.signalCode !== null) return;
          const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
          child.kill('SIGTERM');
          await exited;
          clearTimeout(kill);
        },
        ask(message) {
          return new Promise((answered, failed) => {
            if (!child.send) {
              failed(new Error(`${script} was started without an IPC channel`));
              return;
            }
            child.once('message', answered);
            child.send(message);
          });
        },
      };
      live.add(server);
      resolve(server);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', (chunk: Buffer) => {
      if (ready) process.stderr.write(chunk);
      else onData(chunk);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`${script} exited (${code ?? signal}) before listening:\n${output}`));
    });
  });
}
