/**
 * Limits benchmarks (issue 6).
 *
 *   npm run bench -- limits            throughput of an entity GET by id with per-tenant limits on (in
 *                                      memory; in Redis) against the same read with limits off, rounds
 *                                      interleaved in one run (target: at least 0.9)
 *   npm run bench -- noisy-neighbour   tenant A sends ten times its rate limit while tenant B sends a
 *                                      steady load within its own: B's p99 with A flooding against B's
 *                                      p99 alone, for the memory and the Redis limiter (target: at most 1.5)
 *
 * PostgreSQL at 127.0.0.1:5432 (or BENCH_PG_URL); Redis at 127.0.0.1:6379 (or BENCH_REDIS_URL).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon, { type RequestSpec, type Result } from 'autocannon';
import { type ChildServer, serverScript, startChildServer } from './lib/child-server.js';
import { LatencyHistogram } from './lib/latency-histogram.js';
import { createScratchDatabase, type ScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';
import { steadyLoad } from './lib/steady-load.js';

declare module 'autocannon' {
  interface Options {
    /** Requests per second from all connections together. */
    readonly overallRate?: number;
  }
}

const ADMIN_TOKEN = `bench-admin-${randomBytes(16).toString('hex')}`;
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
const CONFIG_YAML = `
entities:
  projects:
    scope: tenant
    fields:
      name: { type: text, required: true, unique: true }
rateLimits:
  redisPrefix: "tenantry-bench-${process.pid}:"
`;

export interface LimitsBenchOptions {
  readonly connections: number;
  readonly duration: number;
  readonly rounds: number;
  /** Node flags of the Tenantry servers (such as `--max-semi-space-size=64`). */
  readonly serverNodeFlags: readonly string[];
  readonly log: (line: string) => void;
}

interface BenchTenant {
  readonly key: string;
  readonly ids: readonly string[];
}

async function call(url: string, path: string, init: RequestInit): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}${path}`, init);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as Record<string, unknown>;
}

/** A tenant with 100 projects; `limits` in its own config. */
async function benchTenant(
  url: string,
  slug: string,
  limits: Record<string, number> | undefined,
): Promise<BenchTenant> {
  const created = await call(url, '/admin/tenants', {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: slug, slug, ...(limits ? { config: { limits } } : {}) }),
  });
  const key = (created.apiKey as { key: string }).key;
  const ids: string[] = [];
  const rows = await call(url, '/api/v1/projects/batch', {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ rows: Array.from({ length: 100 }, (_, i) => ({ name: `project ${i}` })) }),
  });
  for (const row of rows.items as { id: string }[]) ids.push(row.id);
  return { key, ids };
}

function reads(tenant: BenchTenant): RequestSpec[] {
  return [
    {
      method: 'GET',
      headers: { 'x-api-key': tenant.key },
      setupRequest: (spec) => ({
        ...spec,
        path: `/api/v1/projects/${tenant.ids[Math.floor(Math.random() * tenant.ids.length)]}`,
      }),
    },
  ];
}

async function startServers(database: ScratchDatabase, configFile: string, nodeFlags: readonly string[]) {
  const env = {
    DATABASE_URL: database.url,
    TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
    TENANTRY_CONFIG: configFile,
    LOG_LEVEL: 'silent',
  };
  const memory = await startChildServer(serverScript('app-server.ts'), env, nodeFlags);
  const redis = await startChildServer(serverScript('app-server.ts'), { ...env, REDIS_URL }, nodeFlags);
  return { memory, redis };
}

async function scratch(suffix: string) {
  const database = await createScratchDatabase(suffix);
  const dir = mkdtempSync(join(tmpdir(), `tenantry-bench-${suffix}-`));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, CONFIG_YAML);
  return { database, configFile };
}

/** Limits on (memory, Redis) against limits off: the same route, limits high enough to refuse nothing. */
export async function runLimits(options: LimitsBenchOptions): Promise<string> {
  const { database, configFile } = await scratch('limits');
  let servers: { memory: ChildServer; redis: ChildServer } | undefined;
  try {
    servers = await startServers(database, configFile, options.serverNodeFlags);
    const high = { requestsPerSecond: 1_000_000, burst: 1_000_000, maxConcurrent: 100_000 };
    const off = await benchTenant(servers.memory.url, 'limits-off', undefined);
    const on = await benchTenant(servers.memory.url, 'limits-on', high);
    const rateOnly = await benchTenant(servers.memory.url, 'limits-rate', {
      requestsPerSecond: high.requestsPerSecond,
      burst: high.burst,
    });
    const modes = [
      { name: 'off (memory server)', server: servers.memory, tenant: off },
      { name: 'on, in memory', server: servers.memory, tenant: on },
      { name: 'off (Redis server)', server: servers.redis, tenant: off },
      { name: 'on, in Redis', server: servers.redis, tenant: on },
      { name: 'rate only, in Redis', server: servers.redis, tenant: rateOnly },
    ];
    const load = async (mode: (typeof modes)[number], duration: number) => {
      const result: Result = await autocannon({
        url: mode.server.url,
        connections: options.connections,
        duration,
        pipelining: 1,
        requests: reads(mode.tenant),
      });
      const ok = (result['2xx'] ?? 0) / Math.max(1, result.requests.total);
      if (ok < 0.99) throw new Error(`${mode.name}: only ${fmt(ok * 100, 1)} % of responses were 2xx`);
      return result;
    };
    for (const mode of modes) await load(mode, 2);
    const runs = new Map<string, Result[]>(modes.map((mode) => [mode.name, []]));
    for (let round = 0; round < options.rounds; round += 1) {
      for (const mode of modes) {
        const result = await load(mode, options.duration);
        runs.get(mode.name)!.push(result);
        options.log(`  round ${round + 1} ${mode.name}: ${fmt(result.requests.average)} req/s`);
      }
    }
    const rate = (name: string) => median(runs.get(name)!.map((result) => result.requests.average));
    const p99 = (name: string) => median(runs.get(name)!.map((result) => result.latency.p99));
    const lines = [
      '### Entity GET by id with per-tenant limits on vs off',
      '',
      `${options.rounds} interleaved rounds of ${options.duration} s, ${options.connections} connections, medians. Limits on: requestsPerSecond 1,000,000, burst 1,000,000, maxConcurrent 100,000 (nothing refused: the cost measured is the limiter's). Two server processes on one PostgreSQL, one without Redis, one with REDIS_URL; each compared with limits off on itself.`,
      '',
      '| mode | req/s | p99 ms | ratio to off on the same server |',
      '| --- | ---: | ---: | ---: |',
    ];
    for (const [name, baseline] of [
      ['off (memory server)', 'off (memory server)'],
      ['on, in memory', 'off (memory server)'],
      ['off (Redis server)', 'off (Redis server)'],
      ['on, in Redis', 'off (Redis server)'],
      ['rate only, in Redis', 'off (Redis server)'],
    ] as const) {
      lines.push(
        `| ${name} | ${fmt(rate(name))} | ${fmt(p99(name), 1)} | ${fmt(rate(name) / rate(baseline), 2)} |`,
      );
    }
    return lines.join('\n');
  } finally {
    await servers?.memory.stop();
    await servers?.redis.stop();
    await database.drop();
  }
}

/** How long A's flood runs before B's measured load starts (see `alongside`). */
const FLOOD_LEAD_SECONDS = 2;

const AUTOCANNON_CLI = fileURLToPath(import.meta.resolve('autocannon/autocannon.js'));
const STEADY_FLOOD = fileURLToPath(new URL('./generators/steady-flood.ts', import.meta.url));
const TSX_LOADER = import.meta.resolve('tsx');

/**
 * How tenant A's flood is sent: `steady` spreads the requests evenly over each second (an open
 * loop, like many independent clients); `autocannon` is autocannon's `-R`, where each of 20
 * connections sends its quota for the second back to back at the start of it (a burst).
 */
export type FloodGenerator = 'steady' | 'autocannon';

interface Flood {
  readonly url: string;
  readonly key: string;
  readonly rate: number;
  readonly duration: number;
  readonly priority: number | 'idle';
  readonly generator: FloodGenerator;
}

/** The flood's generator in a child process at a fixed rate; the statuses it received. */
function floodInChild(flood: Flood): Promise<{ accepted: number; refused: number }> {
  const generatorArgs =
    flood.generator === 'steady'
      ? ['--import', TSX_LOADER, STEADY_FLOOD]
      : [
          AUTOCANNON_CLI,
          ...['-c', '20', '-d', String(flood.duration), '-R', String(flood.rate)],
          ...['-H', `x-api-key=${flood.key}`, '-j', flood.url],
        ];
  return new Promise((resolve, reject) => {
    const [command, prefix] =
      flood.priority === 'idle' ? ['chrt', ['--idle', '0', process.execPath]] : [process.execPath, []];
    const child = spawn(command, [...prefix, ...generatorArgs], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: {
        ...process.env,
        FLOOD_URL: flood.url,
        FLOOD_KEY: flood.key,
        FLOOD_RATE: String(flood.rate),
        FLOOD_DURATION: String(flood.duration),
      },
    });
    if (flood.priority !== 'idle' && flood.priority !== 0 && child.pid !== undefined) {
      setPriority(child.pid, flood.priority);
    }
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.once('error', reject);
    child.once('exit', () => {
      try {
        const result = JSON.parse(output) as {
          '2xx'?: number;
          statusCodeStats?: Record<string, { count: number }>;
          statuses?: Record<string, number>;
        };
        resolve(
          result.statuses
            ? { accepted: result.statuses['200'] ?? 0, refused: result.statuses['429'] ?? 0 }
            : { accepted: result['2xx'] ?? 0, refused: result.statusCodeStats?.['429']?.count ?? 0 },
        );
      } catch (error) {
        reject(error);
      }
    });
  });
}

export interface NoisyNeighbourOptions extends LimitsBenchOptions {
  /**
   * Scheduling of A's load generator. In production A's client runs on A's machines; here it
   * shares the two vCPUs with the server. `idle` (SCHED_IDLE, through `chrt`) lets it run only
   * when nothing else wants the CPU and be preempted at once when something does, which comes
   * closest to that; a nice value (19 the mildest) still competes for a share and, on wake-up,
   * holds a CPU for up to a scheduler slice. 0 is the harsh case.
   */
  readonly floodPriority: number | 'idle';
  /** Tenant A's cap on requests in flight (its `limits.maxConcurrent`); 0: none. */
  readonly floodMaxConcurrent: number;
  readonly floodGenerator: FloodGenerator;
}

/**
 * Tenant A floods at ten times its limit; tenant B's p99 alone, alongside A, and alongside the
 * same flood sent to /healthz (no tenant: what the machine alone does to B). B's latencies are
 * pooled over all rounds of a condition, at 10 µs resolution.
 */
export async function runNoisyNeighbour(options: NoisyNeighbourOptions): Promise<string> {
  const { database, configFile } = await scratch('noisy');
  let servers: { memory: ChildServer; redis: ChildServer } | undefined;
  const limitA = 100;
  const rateB = 200;
  const connectionsB = 10;
  try {
    servers = await startServers(database, configFile, options.serverNodeFlags);
    const noisy = await benchTenant(servers.memory.url, 'noisy-a', {
      requestsPerSecond: limitA,
      burst: limitA,
      ...(options.floodMaxConcurrent > 0 ? { maxConcurrent: options.floodMaxConcurrent } : {}),
    });
    const quiet = await benchTenant(servers.memory.url, 'quiet-b', {
      requestsPerSecond: 10_000,
      burst: 10_000,
    });
    const lines = [
      '### Noisy neighbour: tenant A at ten times its limit, tenant B within its own',
      '',
      `Tenant A: limit ${limitA} req/s (burst ${limitA}), offered ${limitA * 10} req/s ${options.floodGenerator === 'steady' ? 'on a fixed schedule spread over each second' : "by autocannon's `-R` (each connection's quota for a second sent back to back at its start)"} in a process of its own ${options.floodPriority === 'idle' ? 'under SCHED_IDLE' : `at nice ${options.floodPriority}`}, started ${FLOOD_LEAD_SECONDS} s before B's measured load and ending after it (B meets A's steady traffic, not the start of a process). Tenant B: ${rateB} req/s on a fixed schedule over ${connectionsB} keep-alive connections, each latency measured from when the request was due (coordinated omission corrected), at 10 µs resolution. ${options.rounds} rounds of ${options.duration} s, each running "B alone", "B with A flooding", "B with the same flood on /healthz" (no tenant: the machine alone) and "B with A at its limit" (A's allowed traffic alone) in turn; B's latencies pooled per condition over all rounds (${fmt(rateB * options.duration * options.rounds)} requests each).${options.floodMaxConcurrent > 0 ? ` Tenant A also has maxConcurrent ${options.floodMaxConcurrent}.` : ''}${options.serverNodeFlags.length > 0 ? ` Servers run with \`${options.serverNodeFlags.join(' ')}\`.` : ''}`,
      '',
      '| limiter | B p99 alone ms | B p99 with A flooding ms | ratio | median of round ratios | per-round ratios | B p99 with A at its limit ms | ratio | B p99 with the flood on /healthz ms | ratio | A accepted | A refused (429) | B failures |',
      '| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const [name, server] of [
      ['memory', servers.memory],
      ['Redis', servers.redis],
    ] as const) {
      const bLoad = (histogram = new LatencyHistogram()) =>
        steadyLoad({
          url: server.url,
          rate: rateB,
          durationSeconds: options.duration,
          connections: connectionsB,
          next: () => ({
            path: `/api/v1/projects/${quiet.ids[Math.floor(Math.random() * quiet.ids.length)]}`,
            headers: { 'x-api-key': quiet.key },
          }),
          histogram,
        });
      // The flood's process starts FLOOD_LEAD_SECONDS before B's measured load and ends after
      // it: B is measured against A's steady traffic, not against a Node process starting up
      // (which costs the machine more CPU in its first second than the flood does).
      const flood = (url: string, rate = limitA * 10) =>
        floodInChild({
          url,
          key: noisy.key,
          rate,
          duration: options.duration + FLOOD_LEAD_SECONDS + 1,
          priority: options.floodPriority,
          generator: options.floodGenerator,
        });
      const alongside = async (url: string, histogram: LatencyHistogram, rate?: number) => {
        const flooding = flood(url, rate);
        await new Promise((resolve) => setTimeout(resolve, FLOOD_LEAD_SECONDS * 1000));
        const b = await bLoad(histogram);
        return [b, await flooding] as const;
      };
      const aUrl = `${server.url}/api/v1/projects/${noisy.ids[0]}`;
      await bLoad();
      // Warm A's paths too (the refusals above all): a server in service has run them before.
      await Promise.all([bLoad(), flood(aUrl)]);
      const alone = new LatencyHistogram();
      const together = new LatencyHistogram();
      const controlled = new LatencyHistogram();
      const atLimit = new LatencyHistogram();
      const roundRatios: number[] = [];
      let accepted = 0;
      let refused = 0;
      let failures = 0;
      for (let round = 0; round < options.rounds; round += 1) {
        const roundAlone = new LatencyHistogram();
        const roundTogether = new LatencyHistogram();
        const soloRun = await bLoad(roundAlone);
        failures += soloRun.failed;
        alone.add(roundAlone);
        const [b, a] = await alongside(aUrl, roundTogether);
        failures += b.failed;
        together.add(roundTogether);
        const [c] = await alongside(`${server.url}/healthz`, controlled);
        failures += c.failed;
        // A within its limit: what A's allowed traffic alone costs B.
        const [d] = await alongside(aUrl, atLimit, limitA);
        failures += d.failed;
        accepted += a.accepted;
        refused += a.refused;
        roundRatios.push(roundTogether.percentile(99) / roundAlone.percentile(99));
        options.log(
          `  ${name} round ${round + 1}: B p99 alone ${fmt(roundAlone.percentile(99), 2)} ms, with A ${fmt(roundTogether.percentile(99), 2)} ms; A ${a.accepted} accepted, ${a.refused} refused`,
        );
      }
      const ratio = together.percentile(99) / alone.percentile(99);
      lines.push(
        `| ${name} | ${fmt(alone.percentile(99), 2)} | ${fmt(together.percentile(99), 2)} | ${fmt(ratio, 2)} | ${fmt(median(roundRatios), 2)} | ${roundRatios.map((r) => fmt(r, 2)).join(', ')} | ${fmt(atLimit.percentile(99), 2)} | ${fmt(atLimit.percentile(99) / alone.percentile(99), 2)} | ${fmt(controlled.percentile(99), 2)} | ${fmt(controlled.percentile(99) / alone.percentile(99), 2)} | ${fmt(accepted)} | ${fmt(refused)} (${fmt((refused / Math.max(1, accepted + refused)) * 100, 0)} %) | ${failures} |`,
      );
    }
    return lines.join('\n');
  } finally {
    await servers?.memory.stop();
    await servers?.redis.stop();
    await database.drop();
  }
}
