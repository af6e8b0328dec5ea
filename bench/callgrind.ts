/**
 * Instructions per request of `GET /tenant-info` with an API key, Tenantry against bare Fastify,
 * counted by valgrind's callgrind (`npm run bench -- callgrind`). Unlike requests per second,
 * an instruction count does not depend on what else the machine is doing, so it can weigh a few
 * microseconds of work. Only the main thread is counted (`--separate-threads`): V8's compiler
 * threads keep optimising for a long time under valgrind's slowdown, and the kernel's share (the
 * socket writes) is outside callgrind's view. Each server runs under valgrind in its own process;
 * every server is built as production builds it (lib/built-server.ts);
 * requests are sent one at a time over one keep-alive connection; after a warm-up, the heap is
 * collected, the counters zeroed, a fixed number of requests sent and the counters dumped, a few
 * times.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { builtServerScript } from './lib/built-server.js';
import { topFunctions } from './lib/callgrind-functions.js';
import { type ChildServer, serverScript, startChildServer } from './lib/child-server.js';
import { httpGet } from './lib/http-get.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';
import { createTenantKey, fetchBody } from './tenant-info.js';

/**
 * V8 drops the bytecode of functions unused for a while and compiles it again on the next call:
 * a server idle during the other's rounds would pay that inside its own measurement.
 */
const NODE_FLAGS = ['--no-flush-bytecode', '--expose-gc'];
/** Names V8's compiled code for `--callgrind-functions` (see lib/callgrind-functions.ts). */
const PERF_MAP_FLAGS = ['--perf-basic-prof'];

const CALLGRIND_SERVERS = ['bare', 'key-map', 'tenantry'] as const;
export type CallgrindServer = (typeof CALLGRIND_SERVERS)[number];

/**
 * `--callgrind-servers=tenantry` counts one server only (to compare builds of Tenantry);
 * `key-map` is the hand-written route of the hot-path benchmark (key digest in a Map, headers).
 */
export function callgrindServers(list: string | undefined): CallgrindServer[] {
  const names = (list ?? 'bare,tenantry').split(',').map((name) => name.trim());
  for (const name of names) {
    if (!(CALLGRIND_SERVERS as readonly string[]).includes(name))
      throw new Error(`unknown callgrind server ${name}; choose from ${CALLGRIND_SERVERS.join(', ')}`);
  }
  return names as CallgrindServer[];
}

export interface CallgrindOptions {
  readonly servers: readonly CallgrindServer[];
  readonly warmup: number;
  readonly requests: number;
  readonly rounds: number;
  /** With a number: the top functions by instructions per request of each server's last round. */
  readonly functions?: number;
  readonly log: (line: string) => void;
}

/** Sends `count` GETs one after another over one keep-alive connection; every one must be 200. */
async function sequential(url: string, headers: Record<string, string>, count: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const target = new URL(url);
  try {
    for (let i = 0; i < count; i += 1) {
      const status = await httpGet(agent, target, target.pathname, headers);
      if (status !== 200) throw new Error(`${url} answered ${status || 'nothing'}`);
    }
  } finally {
    agent.destroy();
  }
}

/** Main-thread instructions of dump `dump` of `prefix` (thread 1 is the main thread), once written. */
async function mainThreadInstructions(dir: string, prefix: string, dump: number): Promise<number> {
  const file = join(dir, `${prefix}.${dump}-01`);
  for (let waited = 0; !existsSync(file); waited += 100) {
    if (waited >= 30_000) throw new Error(`no callgrind dump ${file}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  // The dump is complete once its totals line is written.
  for (let waited = 0; ; waited += 100) {
    const text = readFileSync(file, 'utf8');
    const summary = /^summary: (\d+)$/m.exec(text);
    if (summary && /^totals: /m.test(text)) return Number(summary[1]);
    if (waited >= 30_000) throw new Error(`no summary line in ${file}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function benchCallgrind(options: CallgrindOptions): Promise<string> {
  const { log } = options;
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-callgrind-'));
  const database = await createScratchDatabase('callgrind');
  const servers: ChildServer[] = [];
  const underValgrind = (name: string) => ({
    command: 'valgrind',
    args: [
      '--tool=callgrind',
      '--smc-check=all-non-file',
      '--separate-threads=yes',
      `--callgrind-out-file=${join(dir, name)}`,
    ],
    startMs: 600_000,
  });
  try {
    const adminToken = randomBytes(24).toString('base64url');
    const counted = (name: CallgrindServer) => options.servers.includes(name);
    const nodeFlags = options.functions === undefined ? NODE_FLAGS : [...NODE_FLAGS, ...PERF_MAP_FLAGS];
    log(`starting Tenantry${counted('tenantry') ? ' under valgrind (a minute or two)' : ''}…`);
    const tenantry = await startChildServer(
      await builtServerScript(serverScript('tenantry-server.ts')),
      {
        DATABASE_URL: database.url,
        DATABASE_ADMIN_URL: '',
        TENANTRY_CONFIG: '',
        REDIS_URL: '',
        LOG_LEVEL: 'warn',
        BENCH_LOGGER: 'config',
        TENANTRY_ADMIN_TOKEN: adminToken,
        PORT: '',
      },
      nodeFlags,
      counted('tenantry') ? { wrapper: underValgrind('tenantry') } : {},
    );
    servers.push(tenantry);
    const key = await createTenantKey(tenantry.url, adminToken);
    const body = await fetchBody(tenantry.url, { 'x-api-key': key });
    const targets: { name: CallgrindServer; server: ChildServer; headers: Record<string, string> }[] = [];
    if (counted('bare')) {
      log('starting bare Fastify under valgrind…');
      const bare = await startChildServer(
        await builtServerScript(serverScript('bare-server.ts')),
        { BENCH_BODY: body },
        nodeFlags,
        { wrapper: underValgrind('bare') },
      );
      servers.push(bare);
      targets.push({ name: 'bare', server: bare, headers: {} });
    }
    if (counted('key-map')) {
      log('starting the key-map route under valgrind…');
      const keyMap = await startChildServer(
        await builtServerScript(serverScript('key-map-server.ts')),
        { BENCH_KEYS: JSON.stringify([{ key, tenant: JSON.parse(body) }]) },
        nodeFlags,
        { wrapper: underValgrind('key-map') },
      );
      servers.push(keyMap);
      targets.push({ name: 'key-map', server: keyMap, headers: { 'x-api-key': key } });
    }
    if (counted('tenantry'))
      targets.push({ name: 'tenantry', server: tenantry, headers: { 'x-api-key': key } });
    for (const target of targets) {
      log(`warm-up ${target.name}: ${options.warmup} requests`);
      await sequential(`${target.server.url}/tenant-info`, target.headers, options.warmup);
    }
    const perRequest = new Map<string, number[]>(targets.map((target) => [target.name, []]));
    for (let round = 1; round <= options.rounds; round += 1) {
      for (const target of targets) {
        // Every round starts from a collected heap (servers/collect-on-signal.ts).
        process.kill(target.server.pid, 'SIGUSR2');
        await new Promise((resolve) => setTimeout(resolve, 2_000));
        execFileSync('callgrind_control', ['-z', String(target.server.pid)], { stdio: 'ignore' });
        await sequential(`${target.server.url}/tenant-info`, target.headers, options.requests);
        execFileSync('callgrind_control', ['-d', String(target.server.pid)], { stdio: 'ignore' });
        const instructions = (await mainThreadInstructions(dir, target.name, round)) / options.requests;
        perRequest.get(target.name)!.push(instructions);
        log(`round ${round} ${target.name}: ${fmt(instructions)} instructions per request`);
      }
    }
    const functionTables =
      options.functions === undefined
        ? []
        : targets.flatMap((target) => [
            '',
            `#### ${target.name}: the ${options.functions} costliest functions of round ${options.rounds}, instructions per request (self cost)`,
            '',
            '| instructions | function |',
            '| ---: | --- |',
            ...topFunctions(
              join(dir, `${target.name}.${options.rounds}-01`),
              target.server.pid,
              options.requests,
              options.functions!,
            ).map(
              ([label, cost]) =>
                `| ${fmt(cost)} | \`${label.replaceAll('|', '\\|').replaceAll('`', "'")}\` |`,
            ),
          ]);
    const baseline = targets.find((target) => target.name !== 'tenantry')?.name ?? 'bare';
    const bareMedian = median(perRequest.get(baseline) ?? []);
    const tenantryMedian = median(perRequest.get('tenantry') ?? []);
    return [
      '### GET /tenant-info in instructions per request (callgrind)',
      '',
      `Main thread only, ${options.requests} sequential requests per round after ${options.warmup} of warm-up, ${options.rounds} rounds, medians. Response body identical (${body.length} bytes).`,
      '',
      '| server | instructions per request (median) | per round |',
      '| --- | ---: | --- |',
      ...targets.map(
        (target) =>
          `| ${target.name} | ${fmt(median(perRequest.get(target.name)!))} | ${perRequest
            .get(target.name)!
            .map((value) => fmt(value))
            .join(', ')} |`,
      ),
      ...(perRequest.has('tenantry') && perRequest.has(baseline)
        ? [
            '',
            `**Tenantry / ${baseline}: ${fmt(tenantryMedian / bareMedian, 2)}× the instructions**, ${fmt(tenantryMedian - bareMedian)} more per request.`,
          ]
        : []),
      ...functionTables,
    ].join('\n');
  } finally {
    for (const server of servers) await server.stop();
    await database.drop();
  }
}
