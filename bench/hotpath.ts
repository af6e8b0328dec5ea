/**
 * The hot path (issue 17): what one request costs the server process in CPU, Tenantry against
 * the servers a team would otherwise write, measured in the same rounds.
 *
 *   npm run bench -- hotpath --rounds=8 --duration=5 [--connections=32] [--hotpath-rate=800] [--hotpath-tsx]
 *
 * Servers, each its own process: `bare` (Fastify + pg, `WHERE tenant_id = $1`, no RLS, no
 * authentication), `rls` (hand-written: API key digest in a Map, then BEGIN + tenant + role +
 * SELECT + COMMIT in one message under Tenantry's own policies), `drizzle` (Fastify + Drizzle,
 * RLS in a transaction: five round trips), `key-map` (`/tenant-info` by a Map lookup), and
 * Tenantry (the real server, `LOG_LEVEL=warn`) for a row, a schema and a database tenant and for
 * `/tenant-info`. Every run loads one target for the same time, by default as fast as it answers
 * on 32 connections (closed loop, as the issue measured), with `--hotpath-rate` at a fixed rate
 * (open loop) instead; the figure that decides is the server's own CPU time (user + system,
 * /proc) divided by the requests it answered. Rounds visit the targets in a rotating order
 * (A B C, B C A, ...); requests per second and latency are information.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { adminPost, BENCH_ADMIN_TOKEN, PROJECTS_ENTITIES_YAML } from './lib/bench-tenants.js';
import { builtServerScript } from './lib/built-server.js';
import { type ChildServer, serverScript, startChildServer } from './lib/child-server.js';
import { commandCpu, commandCpuMs, cpuSnapshot, cpuUsage, rssMb, waitForQuiet } from './lib/cpu-usage.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';
import { steadyLoad } from './lib/steady-load.js';
import { dropTenantDatabases } from './provisioning.js';

export interface HotpathOptions {
  /** Requests per second of every measured run (open loop); 0: closed loop on `connections`. */
  readonly rate: number;
  readonly duration: number;
  readonly rounds: number;
  /** Connections of the closed-loop runs. */
  readonly connections: number;
  /** A round's runs wait until other processes use at most this many cores. */
  readonly maxOtherCores: number;
  /** Node flags of the Tenantry server (`--cpu-prof`, say). */
  readonly tenantryNodeFlags: readonly string[];
  /** Run the servers through tsx instead of built (see built-server.ts): for comparison only. */
  readonly tsx: boolean;
  /**
   * `database.connectionsPerTenantDatabase` of the Tenantry server. By default 10, the width of
   * the pool row and schema tenants share (`database.maxConnections`), so that the levels are
   * compared on their isolation and not on how many statements each may run at once.
   */
  readonly tenantDatabasePool: number;
  readonly log: (line: string) => void;
}

export interface Target {
  readonly name: string;
  readonly server: ChildServer;
  readonly next: () => { readonly path: string; readonly headers: Record<string, string> };
}

/** One measured run of one target. */
interface Run {
  readonly cpuUs: number;
  readonly postgresUs: number;
  readonly requestsPerSecond: number;
  readonly p50: number;
  readonly p99: number;
  /** Cores used by processes other than the server, the load generator and PostgreSQL. */
  readonly foreignCores: number;
  readonly stealShare: number;
}

/** A comparison the issue sets a target for: `numerator / denominator` against `limit`. */
interface Ratio {
  readonly label: string;
  readonly numerator: string;
  readonly denominator: string;
  readonly limit: number;
  /** `at most`: the ratio must not exceed the limit; `at least`: must reach it. */
  readonly kind: 'at most' | 'at least';
}

const RATIOS: readonly Ratio[] = [
  {
    label: 'entity GET, Tenantry row / hand-written RLS',
    numerator: 'tenantry row',
    denominator: 'rls',
    limit: 1.15,
    kind: 'at most',
  },
  {
    label: 'entity GET, Drizzle + RLS / Tenantry row',
    numerator: 'drizzle',
    denominator: 'tenantry row',
    limit: 3,
    kind: 'at least',
  },
  {
    label: '/tenant-info, Tenantry / key-map route',
    numerator: 'tenantry info',
    denominator: 'key-map',
    limit: 1.2,
    kind: 'at most',
  },
  {
    label: 'entity GET, Tenantry schema / row',
    numerator: 'tenantry schema',
    denominator: 'tenantry row',
    limit: 1.1,
    kind: 'at most',
  },
  {
    label: 'entity GET, Tenantry database / row',
    numerator: 'tenantry database',
    denominator: 'tenantry row',
    limit: 1.1,
    kind: 'at most',
  },
  {
    label: 'entity GET, Tenantry row / bare (no RLS, no auth)',
    numerator: 'tenantry row',
    denominator: 'bare',
    limit: Number.POSITIVE_INFINITY,
    kind: 'at most',
  },
];

const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

interface Seeded {
  readonly id: string;
  readonly key: string;
  readonly ids: readonly string[];
}

async function seedTenant(url: string, level: string): Promise<Seeded> {
  const created = await adminPost(url, '/admin/tenants', {
    name: `Bench ${level}`,
    slug: `bench-${level}`,
    isolation: level,
  });
  const id = (created.tenant as { id: string }).id;
  const key = (created.apiKey as { key: string }).key;
  const response = await fetch(`${url}/api/v1/projects/batch`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ rows: Array.from({ length: 200 }, (_, n) => ({ name: `seed-${n}` })) }),
  });
  if (!response.ok) throw new Error(`seeding ${level}: ${response.status} ${await response.text()}`);
  const items = ((await response.json()) as { items: { id: string }[] }).items;
  return { id, key, ids: items.map((item) => item.id) };
}

async function measure(target: Target, options: HotpathOptions, seconds: number): Promise<Run> {
  const before = cpuSnapshot(target.server.pid);
  const postgresBefore = commandCpu('postgres');
  const { ok, p50, p99 } = await (options.rate > 0
    ? steadyRun(target, options, seconds)
    : closedRun(target, options, seconds));
  const after = cpuSnapshot(target.server.pid);
  const postgresAfter = commandCpu('postgres');
  const usage = cpuUsage(before, after)!;
  const postgresMs = commandCpuMs(postgresBefore!, postgresAfter!);
  return {
    cpuUs: (usage.processMs * 1000) / ok,
    postgresUs: (postgresMs * 1000) / ok,
    requestsPerSecond: ok / seconds,
    p50,
    p99,
    foreignCores: Math.max(0, usage.othersMs - postgresMs) / (seconds * 1000),
    stealShare: usage.stealShare,
  };
}

interface Load {
  readonly ok: number;
  readonly p50: number;
  readonly p99: number;
}

/** `options.rate` requests per second on a fixed schedule; latency at 10 µs resolution. */
async function steadyRun(target: Target, options: HotpathOptions, seconds: number): Promise<Load> {
  const result = await steadyLoad({
    url: target.server.url,
    rate: options.rate,
    durationSeconds: seconds,
    connections: 16,
    next: target.next,
  });
  if (result.failed > 0) {
    const statuses = JSON.stringify([...result.statuses]);
    throw new Error(`${target.name}: ${result.failed} requests failed (${statuses})`);
  }
  return { ok: result.ok, p50: result.histogram.percentile(50), p99: result.histogram.percentile(99) };
}

/** As many requests as the server answers on `options.connections` connections; whole ms. */
async function closedRun(target: Target, options: HotpathOptions, seconds: number): Promise<Load> {
  const result = await autocannon({
    url: target.server.url,
    connections: options.connections,
    duration: seconds,
    pipelining: 1,
    requests: [{ method: 'GET', setupRequest: (request) => ({ ...request, ...target.next() }) }],
  });
  const ok = result['2xx'] ?? 0;
  if (ok < result.requests.total * 0.99)
    throw new Error(`${target.name}: fewer than 99 % of the responses were 2xx`);
  return { ok, p50: result.latency.p50, p99: result.latency.p99 };
}

/** A run is disturbed when something else took a fifth of a core, or the hypervisor 5 % steal. */
const disturbed = (run: Run) => run.foreignCores > 0.2 || run.stealShare > 0.05;

export async function runHotpath(options: HotpathOptions): Promise<string> {
  const { log } = options;
  const database = await createScratchDatabase('hotpath');
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-hotpath-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(
    configFile,
    `${PROJECTS_ENTITIES_YAML}database:\n  connectionsPerTenantDatabase: ${options.tenantDatabasePool}\n`,
  );
  const servers: ChildServer[] = [];
  const start = async (script: string, env: Record<string, string>, flags: readonly string[] = []) => {
    const path = options.tsx ? serverScript(script) : await builtServerScript(serverScript(script));
    const server = await startChildServer(path, env, flags);
    servers.push(server);
    return server;
  };
  try {
    const tenantry = await start(
      'entity-server.ts',
      {
        DATABASE_URL: database.url,
        TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
        TENANTRY_CONFIG: configFile,
        LOG_LEVEL: 'warn',
        BENCH_LOGGER: 'config',
      },
      options.tenantryNodeFlags,
    );
    const targets = await setUpTargets(tenantry, database.url, start);
    log('warming every target up (3 s each)…');
    for (const target of targets) await measure(target, options, 3);

    const runs = new Map<string, Run[]>(targets.map((target) => [target.name, []]));
    const disturbedRounds: number[] = [];
    for (let round = 0; round < options.rounds; round += 1) {
      await waitForQuiet(options.maxOtherCores, log);
      const shift = round % targets.length;
      const line: string[] = [];
      for (const target of [...targets.slice(shift), ...targets.slice(0, shift)]) {
        const run = await measure(target, options, options.duration);
        runs.get(target.name)!.push(run);
        if (disturbed(run) && !disturbedRounds.includes(round + 1)) disturbedRounds.push(round + 1);
        line.push(`${target.name} ${fmt(run.cpuUs)}${disturbed(run) ? '*' : ''}`);
      }
      log(`  round ${round + 1} (µs of server CPU per request; * disturbed): ${line.join(', ')}`);
    }
    const rss = new Map(servers.map((server) => [server.pid, rssMb(server.pid)]));
    return report({ targets, runs, rss, disturbedRounds, options });
  } finally {
    for (const server of servers) await server.stop().catch(() => undefined);
    await dropTenantDatabases(database.url);
    await database.drop();
  }
}

/** Tenants seeded through Tenantry, the peers started on its row tenant's table and key. */
export async function setUpTargets(
  tenantry: ChildServer,
  databaseUrl: string,
  start: (script: string, env: Record<string, string>) => Promise<ChildServer>,
): Promise<Target[]> {
  // Ten tenants in all, as in the issue's measurement: seven that are not called.
  for (let n = 0; n < 7; n += 1)
    await adminPost(tenantry.url, '/admin/tenants', { name: `Idle ${n}`, slug: `idle-${n}` });
  const row = await seedTenant(tenantry.url, 'row');
  const schema = await seedTenant(tenantry.url, 'schema');
  const db = await seedTenant(tenantry.url, 'database');
  const info = await fetch(`${tenantry.url}/tenant-info`, { headers: { 'x-api-key': row.key } });
  const peerEnv = {
    BENCH_DB_URL: databaseUrl,
    BENCH_KEYS: JSON.stringify([{ key: row.key, tenant: await info.json() }]),
  };
  const bare = await start('entity-bare-server.ts', {
    BENCH_DB_URL: databaseUrl,
    BENCH_TABLE: 'app.projects',
    BENCH_TENANT: row.id,
  });
  const byId =
    (tenant: Seeded, withKey = true) =>
    () => ({
      path: `/api/v1/projects/${pick(tenant.ids)}`,
      headers: withKey ? { 'x-api-key': tenant.key } : ({} as Record<string, string>),
    });
  const tenantInfo = () => ({ path: '/tenant-info', headers: { 'x-api-key': row.key } });
  return [
    { name: 'bare', server: bare, next: byId(row, false) },
    { name: 'rls', server: await start('rls-peer-server.ts', peerEnv), next: byId(row) },
    { name: 'drizzle', server: await start('drizzle-peer-server.ts', peerEnv), next: byId(row) },
    { name: 'tenantry row', server: tenantry, next: byId(row) },
    { name: 'tenantry schema', server: tenantry, next: byId(schema) },
    { name: 'tenantry database', server: tenantry, next: byId(db) },
    { name: 'key-map', server: await start('key-map-server.ts', peerEnv), next: tenantInfo },
    { name: 'tenantry info', server: tenantry, next: tenantInfo },
  ];
}

interface Measured {
  readonly targets: readonly Target[];
  readonly runs: ReadonlyMap<string, readonly Run[]>;
  readonly rss: ReadonlyMap<number, number>;
  readonly disturbedRounds: readonly number[];
  readonly options: HotpathOptions;
}

function report({ targets, runs, rss, disturbedRounds, options }: Measured): string {
  const cpuOf = (name: string) => runs.get(name)!.map((run) => run.cpuUs);
  const load =
    options.rate > 0
      ? `${fmt(options.rate)} requests per second on a fixed schedule (open loop, 16 connections; latency at 10 µs resolution, from when each request was due)`
      : `As many requests as each server answers on ${options.connections} connections (closed loop, autocannon; latency in whole milliseconds)`;
  const lines = [
    '### Hot path: server CPU per request (issue 17)',
    '',
    `${options.tsx ? 'Servers run through tsx (not as production runs them). ' : 'Every server built with esbuild, as a production build runs (tsx adds work per request). '}${load}, ${options.duration} s per run, ${options.rounds} rounds visiting the targets in rotating order; medians of the rounds (spread: lowest–highest). Server CPU from /proc/<pid>/stat (user + system) over the run, divided by the requests answered; PostgreSQL's CPU likewise (all its processes). RSS after the rounds. The database tenant's pool has ${options.tenantDatabasePool} connections (\`database.connectionsPerTenantDatabase\`; row and schema tenants share the runtime pool of 10).`,
    '',
    '| target | server CPU µs per request | spread | PostgreSQL CPU µs | req/s | p50 ms | p99 ms | RSS MB |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const target of targets) {
    const targetRuns = runs.get(target.name)!;
    const cpu = cpuOf(target.name);
    const of = (field: 'postgresUs' | 'requestsPerSecond' | 'p50' | 'p99') =>
      median(targetRuns.map((run) => run[field]));
    lines.push(
      `| ${target.name} | **${fmt(median(cpu))}** | ${fmt(Math.min(...cpu))}–${fmt(Math.max(...cpu))} | ${fmt(of('postgresUs'))} | ${fmt(of('requestsPerSecond'))} | ${fmt(of('p50'), 2)} | ${fmt(of('p99'), 2)} | ${fmt(rss.get(target.server.pid) ?? 0)} |`,
    );
  }
  lines.push(
    '',
    '| ratio of server CPU per request (same rounds) | median | per round | target | status |',
    '| --- | ---: | --- | ---: | --- |',
  );
  for (const ratio of RATIOS) {
    const bottom = cpuOf(ratio.denominator);
    const perRound = cpuOf(ratio.numerator).map((value, index) => value / bottom[index]!);
    const value = median(perRound);
    const finite = Number.isFinite(ratio.limit);
    const met = ratio.kind === 'at most' ? value <= ratio.limit : value >= ratio.limit;
    lines.push(
      `| ${ratio.label} | **${fmt(value, 2)}** | ${perRound.map((r) => fmt(r, 2)).join(', ')} | ${finite ? `${ratio.kind} ${fmt(ratio.limit, 2)}` : '—'} | ${finite ? (met ? 'met' : 'not met') : ''} |`,
    );
  }
  lines.push(
    '',
    disturbedRounds.length === 0
      ? 'No round was disturbed (other processes under 0.2 cores, steal under 5 % in every run).'
      : `Disturbed rounds (kept, not dropped): ${disturbedRounds.join(', ')}: in at least one run another process took over 0.2 cores, or the hypervisor over 5 % steal.`,
  );
  return lines.join('\n');
}
