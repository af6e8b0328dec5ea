/**
 * The entity GET by id at many row tenants (10,000 by default; the hot-path issue asks for
 * 100,000, requests spread over the keys of 10,000): one tenant's load against the same load
 * spread over many tenants, each with its own API key, and the server's RSS. Instead of throughput (which moves
 * 2x within an hour on this machine), it sends a fixed rate below saturation and reads what each
 * request costs: CPU of the Tenantry server and of PostgreSQL (all its processes), transactions
 * and buffer reads in PostgreSQL's statistics, and latency.
 *
 *   npm run bench -- spread-cost --rounds=4 --duration=10 [--spread-tenants=1000] [--spread-total=10000] [--spread-rate=800]
 *
 * Then the same two loads at full speed (autocannon, `--connections`), interleaved: requests per
 * second, spread against one tenant in the same round.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon from 'autocannon';
import pg from 'pg';
import { loadConfig } from '../src/config/load-config.js';
import { adminPost, BENCH_ADMIN_TOKEN, PROJECTS_ENTITIES_YAML } from './lib/bench-tenants.js';
import { builtServerScript } from './lib/built-server.js';
import { serverScript, startChildServer } from './lib/child-server.js';
import { commandCpu, commandCpuMs, cpuSnapshot, rssMb } from './lib/cpu-usage.js';
import { addRowTenants, type KeyedTenant, keyedFillers, warmKeys } from './lib/filler-tenants.js';
import { LatencyHistogram } from './lib/latency-histogram.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';
import { steadyLoad } from './lib/steady-load.js';

export interface SpreadCostOptions {
  /** Tenants with a key that the spread load calls. */
  readonly spreadTenants: number;
  /** Row tenants in the database in all (the one tenant included). */
  readonly totalTenants: number;
  /** Connections of the throughput rounds (autocannon, as many requests as the server answers). */
  readonly connections: number;
  /** Requests per second of every run, below what the machine can serve. */
  readonly rate: number;
  readonly duration: number;
  readonly rounds: number;
  readonly log: (line: string) => void;
}

/** PostgreSQL's counters for one database (`pg_stat_database`). */
interface DatabaseCounters {
  readonly xacts: number;
  readonly blocksHit: number;
  readonly blocksRead: number;
  readonly tuplesFetched: number;
  readonly tuplesUpdated: number;
}

async function databaseCounters(client: pg.Client, name: string): Promise<DatabaseCounters> {
  const { rows } = await client.query<Record<string, string>>(
    `SELECT xact_commit + xact_rollback AS xacts, blks_hit, blks_read, tup_fetched, tup_updated
       FROM pg_stat_database WHERE datname = $1`,
    [name],
  );
  const row = rows[0]!;
  return {
    xacts: Number(row.xacts),
    blocksHit: Number(row.blks_hit),
    blocksRead: Number(row.blks_read),
    tuplesFetched: Number(row.tup_fetched),
    tuplesUpdated: Number(row.tup_updated),
  };
}

/** Costs per request of one run. */
interface RunCost {
  readonly serverUs: number;
  readonly postgresUs: number;
  readonly xacts: number;
  readonly blocksHit: number;
  readonly blocksRead: number;
  readonly tuplesUpdated: number;
  readonly secondsSinceWarm: number;
}

interface Mode {
  readonly name: string;
  readonly pick: () => { key: string; id: string };
}

const pickOne = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

export async function runSpreadCost(options: SpreadCostOptions): Promise<string> {
  const { log } = options;
  const database = await createScratchDatabase('spread');
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-spread-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, PROJECTS_ENTITIES_YAML);
  if (options.spreadTenants >= options.totalTenants)
    throw new Error('--spread-tenants must be fewer than --spread-total');
  // Built and at LOG_LEVEL=warn, as the hot-path benchmark runs Tenantry.
  const server = await startChildServer(await builtServerScript(serverScript('entity-server.ts')), {
    DATABASE_URL: database.url,
    TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
    TENANTRY_CONFIG: configFile,
    LOG_LEVEL: 'warn',
    BENCH_LOGGER: 'config',
  });
  const rss: { label: string; mb: number }[] = [{ label: 'started', mb: rssMb(server.pid) }];
  const stats = new pg.Client({ connectionString: database.url });
  await stats.connect();
  try {
    const created = await adminPost(server.url, '/admin/tenants', { name: 'One', slug: 'bench-one' });
    const key = (created.apiKey as { key: string }).key;
    const batch = await fetch(`${server.url}/api/v1/projects/batch`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ rows: Array.from({ length: 200 }, (_, n) => ({ name: `seed-${n}` })) }),
    });
    const one: KeyedTenant = {
      key,
      ids: ((await batch.json()) as { items: { id: string }[] }).items.map((item) => item.id),
    };
    const fillers = options.totalTenants - 1;
    log(`adding ${fmt(fillers)} row tenants with 10 projects each…`);
    await addRowTenants(database.url, fillers, 10);
    const iterations = loadConfig({
      file: configFile,
      env: { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN },
    }).apiKeys.iterations;
    log(`giving ${fmt(options.spreadTenants)} of them an API key each…`);
    const spread = await keyedFillers(database.url, options.spreadTenants, iterations, log);
    log('first use of each key (its slow hash)…');
    const warmed = performance.now();
    await warmKeys(server.url, [one, ...spread]);
    rss.push({ label: `${fmt(spread.length + 1)} keys and tenants in use`, mb: rssMb(server.pid) });

    const modes: Mode[] = [
      { name: 'one tenant', pick: () => ({ key: one.key, id: pickOne(one.ids) }) },
      {
        name: `spread over ${fmt(spread.length)} tenants`,
        pick: () => {
          const tenant = pickOne(spread);
          return { key: tenant.key, id: pickOne(tenant.ids) };
        },
      },
    ];
    const costs = new Map<string, RunCost[]>(modes.map((mode) => [mode.name, []]));
    const latencies = new Map(modes.map((mode) => [mode.name, new LatencyHistogram()]));
    const run = async (mode: Mode, durationSeconds: number, histogram?: LatencyHistogram) => {
      const statsBefore = await databaseCounters(stats, database.name);
      const serverBefore = cpuSnapshot(server.pid);
      const postgresBefore = commandCpu('postgres');
      const result = await steadyLoad({
        url: server.url,
        rate: options.rate,
        durationSeconds,
        connections: 20,
        next: () => {
          const { key, id } = mode.pick();
          return { path: `/api/v1/projects/${id}`, headers: { 'x-api-key': key } };
        },
        ...(histogram ? { histogram } : {}),
      });
      const serverAfter = cpuSnapshot(server.pid);
      const postgresAfter = commandCpu('postgres');
      // PostgreSQL publishes a backend's counters when it goes idle, at most once a second.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      const statsAfter = await databaseCounters(stats, database.name);
      if (result.failed > 0) throw new Error(`${mode.name}: ${result.failed} requests failed`);
      const requests = result.ok;
      return {
        serverUs: ((serverAfter!.processMs - serverBefore!.processMs) * 1000) / requests,
        postgresUs: (commandCpuMs(postgresBefore!, postgresAfter!) * 1000) / requests,
        // Less the statistics query itself (one transaction).
        xacts: (statsAfter.xacts - statsBefore.xacts - 1) / requests,
        blocksHit: (statsAfter.blocksHit - statsBefore.blocksHit) / requests,
        blocksRead: (statsAfter.blocksRead - statsBefore.blocksRead) / requests,
        tuplesUpdated: statsAfter.tuplesUpdated - statsBefore.tuplesUpdated,
        secondsSinceWarm: (performance.now() - warmed) / 1000,
      } satisfies RunCost;
    };
    for (const mode of modes) await run(mode, 2);
    for (let round = 0; round < options.rounds; round += 1) {
      const ordered = round % 2 === 0 ? modes : [...modes].reverse();
      for (const mode of ordered) {
        const cost = await run(mode, options.duration, latencies.get(mode.name));
        costs.get(mode.name)!.push(cost);
        log(
          `  round ${round + 1} ${mode.name} (${fmt(cost.secondsSinceWarm)} s after warming): server ${fmt(cost.serverUs)} µs, PostgreSQL ${fmt(cost.postgresUs)} µs, ${fmt(cost.xacts, 3)} transactions, ${fmt(cost.blocksHit, 1)} blocks hit, ${fmt(cost.blocksRead, 2)} read, ${cost.tuplesUpdated} rows updated`,
        );
      }
    }

    const throughput = new Map<string, number[]>(modes.map((mode) => [mode.name, []]));
    const saturate = async (mode: Mode, duration: number) => {
      const result = await autocannon({
        url: server.url,
        connections: options.connections,
        duration,
        pipelining: 1,
        requests: [
          {
            method: 'GET',
            setupRequest: (request) => {
              const { key, id } = mode.pick();
              return { ...request, path: `/api/v1/projects/${id}`, headers: { 'x-api-key': key } };
            },
          },
        ],
      });
      if ((result['2xx'] ?? 0) < result.requests.total * 0.99)
        throw new Error(`${mode.name}: fewer than 99 % of the responses were 2xx`);
      return result.requests.average;
    };
    for (const mode of modes) await saturate(mode, 2);
    const roundRatios: number[] = [];
    for (let round = 0; round < options.rounds; round += 1) {
      const ordered = round % 2 === 0 ? modes : [...modes].reverse();
      const rates = new Map<string, number>();
      for (const mode of ordered) {
        const rate = await saturate(mode, options.duration);
        rates.set(mode.name, rate);
        throughput.get(mode.name)!.push(rate);
      }
      roundRatios.push(rates.get(modes[1]!.name)! / rates.get(modes[0]!.name)!);
      log(
        `  throughput round ${round + 1}: ${modes.map((mode) => `${mode.name} ${fmt(rates.get(mode.name)!)} req/s`).join(', ')}; ratio ${fmt(roundRatios.at(-1)!, 2)}`,
      );
    }

    rss.push({ label: 'after the rounds', mb: rssMb(server.pid) });
    const serverRatios = costs
      .get(modes[1]!.name)!
      .map((cost, round) => cost.serverUs / costs.get(modes[0]!.name)![round]!.serverUs);
    const lines = [
      `### Entity GET by id at ${fmt(options.totalTenants)} row tenants: one tenant against spread over ${fmt(spread.length)} (costs per request)`,
      '',
      `${fmt(options.rate)} requests per second on a fixed schedule (below saturation), 20 keep-alive connections, ${options.rounds} rounds of ${options.duration} s, the two loads alternating. Medians of the rounds; CPU from /proc (the Tenantry server's process; every \`postgres\` process), PostgreSQL's counters from \`pg_stat_database\`. Latency pooled over the rounds, measured from when each request was due.`,
      '',
      '| load | server CPU µs | PostgreSQL CPU µs | transactions | blocks hit | blocks read | rows updated per run | p50 ms | p99 ms |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ];
    for (const mode of modes) {
      const runs = costs.get(mode.name)!;
      const of = (field: keyof RunCost) => median(runs.map((cost) => cost[field]));
      const histogram = latencies.get(mode.name)!;
      lines.push(
        `| ${mode.name} | ${fmt(of('serverUs'))} | ${fmt(of('postgresUs'))} | ${fmt(of('xacts'), 3)} | ${fmt(of('blocksHit'), 1)} | ${fmt(of('blocksRead'), 2)} | ${fmt(of('tuplesUpdated'))} | ${fmt(histogram.percentile(50), 2)} | ${fmt(histogram.percentile(99), 2)} |`,
      );
    }
    lines.push(
      '',
      `Server CPU per request, spread / one tenant, per round: ${serverRatios.map((r) => fmt(r, 2)).join(', ')}; median **${fmt(median(serverRatios), 2)}** (target at most 1.10). Server RSS: ${rss.map((r) => `${r.label} ${fmt(r.mb)} MB`).join(', ')}.`,
    );
    const oneRate = median(throughput.get(modes[0]!.name)!);
    const spreadRate = median(throughput.get(modes[1]!.name)!);
    lines.push(
      '',
      `At full speed (autocannon, ${options.connections} connections, ${options.rounds} interleaved rounds of ${options.duration} s): ${modes[0]!.name} ${fmt(oneRate)} req/s, ${modes[1]!.name} ${fmt(spreadRate)} req/s (medians); spread / one per round ${roundRatios.map((r) => fmt(r, 2)).join(', ')}, median **${fmt(median(roundRatios), 2)}**.`,
    );
    return lines.join('\n');
  } finally {
    await stats.end().catch(() => undefined);
    await server.stop();
    await database.drop();
  }
}
