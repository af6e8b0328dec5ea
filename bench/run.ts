/**
 * Hand-run benchmarks; never part of `npm test`.
 *
 *   npm run bench                      # both
 *   npm run bench -- tenant-info       # GET /tenant-info, Tenantry vs bare Fastify
 *   npm run bench -- api-key           # ApiKeyVerifier.verify, cached vs uncached
 *   npm run bench -- entities          # entity API per isolation level vs bare Fastify + pg; provisioning;
 *                                      # at 10,000 tenants also spread over --spread-tenants=1000 keys (0: not)
 *   npm run bench -- tenant-info-breakdown   # diagnosis: the hot path built up in steps
 *   npm run bench -- metrics-observe   # what recording a request in the metrics costs
 *   npm run bench -- identity          # entity GET with a session token / an API key / no authentication
 *   npm run bench -- limits            # entity GET with per-tenant limits on (memory, Redis) vs off
 *   npm run bench -- noisy-neighbour   # tenant B's p99 while tenant A floods at ten times its limit
 *   npm run bench -- callgrind         # /tenant-info in instructions per request, Tenantry vs bare
 *                                      # (valgrind; --callgrind-warmup=6000 --callgrind-requests=2000
 *                                      # --callgrind-servers=bare,tenantry --callgrind-functions=30:
 *                                      # the costliest functions per request, JIT code named)
 *   npm run bench -- allocation        # JavaScript heap allocated per request, Tenantry vs bare
 *                                      # (--allocation-requests=4000 per sample, --allocation-sources=25:
 *                                      # the costliest allocating functions of each Tenantry route)
 *   npm run bench -- spread-cost       # entity GET by id at 10,000 tenants: one tenant's load vs spread over
 *                                      # many tenants' keys, CPU and PostgreSQL work per request at a fixed
 *                                      # rate (--spread-tenants=1000 --spread-total=10000 --spread-rate=800;
 *                                      # the hot-path issue's scale: --spread-total=100000 --spread-tenants=10000)
 *   npm run bench -- hotpath           # server CPU per request: Tenantry (row, schema, database tenant;
 *                                      # /tenant-info) vs bare, hand-written RLS, Drizzle + RLS and a
 *                                      # key-map route, interleaved, every server built with esbuild
 *                                      # (--hotpath-tsx: through tsx; --hotpath-rate=800: fixed rate;
 *                                      # --hotpath-tenant-pool=10: connections per tenant database)
 *   npm run bench -- provisioning      # creating a row, schema and database tenant; the key hash alone
 *                                      # (--provisioning-samples=30)
 *   npm run bench -- backup            # one tenant's backup and restore vs pg_dump -Fc / pg_restore at 1M
 *                                      # rows, with peak RSS; a row tenant's backup among 1,000 row tenants
 *                                      # (--backup-rows=1000000 --backup-row-tenant-rows=100000 --backup-tenants=1000)
 *   npm run bench -- fleet             # fleet operations: migrate 1,000 schema tenants, no-op migrate,
 *                                      # provisioning per level, 200 database tenants in use (~7 min)
 *
 * Options: --connections=50 --duration=10 --warmup=5 --rounds=3 (tenant-info), --max-other-cores=0.2
 * (each measurement first waits until other processes use at most that much CPU; a tenant-info run
 * during which they used more, or the CPU was slowed down, is repeated, up to 4 attempts),
 * --cached-calls=20000 --slow-calls=30 (api-key), --profile [--profile-dir=dir] (V8 CPU profile of the
 * Tenantry server), --fleet-tenants=1000 --fleet-concurrency=4,2,8 --fleet-samples=30
 * --fleet-databases=200 --fleet-baseline-databases=10 --fleet-noop-runs=5 (fleet; its tenant and
 * template databases are dropped too), --flood-priority=idle (noisy-neighbour: tenant A's load generator
 * under SCHED_IDLE, or at a nice of 0 to 19; --flood-max-concurrent=N gives tenant A a cap on requests in flight; --flood-generator=steady spreads A's requests
 * evenly over each second, =autocannon sends them as autocannon's -R does, a burst at the start of each second), --server-node-flags="--max-semi-space-size=64"
 * (limits, noisy-neighbour: Node flags of the Tenantry servers only). Needs PostgreSQL at 127.0.0.1:5432 as postgres (or
 * BENCH_PG_URL); creates and drops scratch databases named tenantry_bench_*. Progress goes to
 * stderr, the markdown summary to stdout.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { benchAllocation } from './allocation.js';
import { benchApiKeyVerify } from './api-key-verify.js';
import { runBackup } from './backup.js';
import { benchCallgrind, callgrindServers } from './callgrind.js';
import { runEntities } from './entities.js';
import { abortFleet, runFleet } from './fleet.js';
import { runHotpath } from './hotpath.js';
import { runIdentity } from './identity.js';
import { stopAllChildServers } from './lib/child-server.js';
import { dropAllScratchDatabases } from './lib/scratch-database.js';
import { type FloodGenerator, runLimits, runNoisyNeighbour } from './limits.js';
import { benchMetricsObserve } from './metrics-observe.js';
import { runProvisioning } from './provisioning.js';
import { runSpreadCost } from './spread-cost.js';
import { benchTenantInfo, defaultProfileDir } from './tenant-info.js';

/** Run by default (and by `all`). */
const BENCHMARKS = ['tenant-info', 'api-key', 'entities'] as const;
/** Diagnosis, or long: run only when named. */
const EXTRA = [
  'hotpath',
  'tenant-info-breakdown',
  'fleet',
  'metrics-observe',
  'identity',
  'limits',
  'noisy-neighbour',
  'callgrind',
  'allocation',
  'spread-cost',
  'provisioning',
  'backup',
] as const;
type Benchmark = (typeof BENCHMARKS)[number] | (typeof EXTRA)[number];

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    connections: { type: 'string', default: '50' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    'max-other-cores': { type: 'string', default: '0.2' },
    'cached-calls': { type: 'string', default: '20000' },
    'slow-calls': { type: 'string', default: '30' },
    profile: { type: 'boolean', default: false },
    'profile-dir': { type: 'string' },
    'fleet-tenants': { type: 'string', default: '1000' },
    'fleet-concurrency': { type: 'string', default: '4,2,8' },
    'fleet-samples': { type: 'string', default: '30' },
    'fleet-databases': { type: 'string', default: '200' },
    'fleet-baseline-databases': { type: 'string', default: '10' },
    'fleet-noop-runs': { type: 'string', default: '5' },
    'flood-priority': { type: 'string', default: 'idle' },
    'server-node-flags': { type: 'string', default: '' },
    'callgrind-warmup': { type: 'string', default: '6000' },
    'callgrind-requests': { type: 'string', default: '2000' },
    'callgrind-servers': { type: 'string', default: 'bare,tenantry' },
    'callgrind-functions': { type: 'string' },
    'allocation-requests': { type: 'string', default: '4000' },
    'spread-tenants': { type: 'string', default: '1000' },
    'flood-max-concurrent': { type: 'string', default: '0' },
    'flood-generator': { type: 'string', default: 'steady' },
    'allocation-sources': { type: 'string', default: '0' },
    'spread-rate': { type: 'string', default: '800' },
    'spread-total': { type: 'string', default: '10000' },
    'provisioning-samples': { type: 'string', default: '30' },
    'backup-rows': { type: 'string', default: '1000000' },
    'backup-row-tenant-rows': { type: 'string', default: '100000' },
    'backup-tenants': { type: 'string', default: '1000' },
    'hotpath-rate': { type: 'string', default: '0' },
    'hotpath-tsx': { type: 'boolean', default: false },
    'hotpath-tenant-pool': { type: 'string', default: '10' },
  },
});

function positiveInteger(name: string, raw: string | undefined): number {
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} must be a positive integer`);
  return value;
}

function floodPriority(): number | 'idle' {
  if (values['flood-priority'] === 'idle') return 'idle';
  const value = Number(values['flood-priority']);
  if (!Number.isInteger(value) || value < 0 || value > 19)
    throw new Error('--flood-priority must be idle or 0 to 19');
  return value;
}

function floodGenerator(): FloodGenerator {
  const value = values['flood-generator'];
  if (value !== 'steady' && value !== 'autocannon') {
    throw new Error('--flood-generator must be steady or autocannon');
  }
  return value;
}

function selected(): Benchmark[] {
  if (positionals.length === 0) return [...BENCHMARKS];
  for (const name of positionals) {
    if (![...BENCHMARKS, ...EXTRA, 'all'].includes(name)) {
      throw new Error(
        `unknown benchmark "${name}"; choose from ${[...BENCHMARKS, ...EXTRA].join(', ')}, all`,
      );
    }
  }
  const named = positionals.flatMap((name) => (name === 'all' ? [...BENCHMARKS] : [name as Benchmark]));
  return [...new Set(named)];
}

async function postgresVersion(): Promise<string> {
  const client = new pg.Client({
    connectionString: process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  });
  await client.connect();
  try {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0]?.server_version ?? 'unknown';
  } finally {
    await client.end();
  }
}

const log = (line: string) => process.stderr.write(`[bench] ${line}\n`);

async function main(): Promise<void> {
  const benchmarks = selected();
  const cpu = cpus();
  const header = [
    `## Tenantry benchmarks, ${new Date().toISOString()}`,
    '',
    `Machine: ${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ` +
      `${Math.round(totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ` +
      `PostgreSQL ${await postgresVersion()} on the same machine; load average before the run ` +
      `${loadavg()
        .map((value) => value.toFixed(2))
        .join(' ')}.`,
    `Command: \`npm run bench -- ${process.argv.slice(2).join(' ')}\``.replace(' -- `', '`'),
  ];
  const sections: string[] = [header.join('\n')];
  for (const benchmark of benchmarks) {
    if (benchmark === 'tenant-info' || benchmark === 'tenant-info-breakdown') {
      const profileDir = values.profile ? (values['profile-dir'] ?? defaultProfileDir()) : undefined;
      const report = await benchTenantInfo({
        connections: positiveInteger('connections', values.connections),
        duration: positiveInteger('duration', values.duration),
        warmup: positiveInteger('warmup', values.warmup),
        rounds: positiveInteger('rounds', values.rounds),
        breakdown: benchmark === 'tenant-info-breakdown',
        maxOtherCores: Number(values['max-other-cores']),
        profileDir,
        log,
      });
      sections.push(report.markdown);
    } else if (benchmark === 'callgrind') {
      sections.push(
        await benchCallgrind({
          warmup: positiveInteger('callgrind-warmup', values['callgrind-warmup']),
          requests: positiveInteger('callgrind-requests', values['callgrind-requests']),
          rounds: positiveInteger('rounds', values.rounds),
          servers: callgrindServers(values['callgrind-servers']),
          ...(values['callgrind-functions'] === undefined
            ? {}
            : { functions: positiveInteger('callgrind-functions', values['callgrind-functions']) }),
          log,
        }),
      );
    } else if (benchmark === 'allocation') {
      sections.push(
        await benchAllocation({
          requests: positiveInteger('allocation-requests', values['allocation-requests']),
          rounds: positiveInteger('rounds', values.rounds),
          sources: Number(values['allocation-sources']),
          log,
        }),
      );
    } else if (benchmark === 'spread-cost') {
      sections.push(
        await runSpreadCost({
          spreadTenants: positiveInteger('spread-tenants', values['spread-tenants']),
          totalTenants: positiveInteger('spread-total', values['spread-total']),
          connections: positiveInteger('connections', values.connections),
          rate: positiveInteger('spread-rate', values['spread-rate']),
          duration: positiveInteger('duration', values.duration),
          rounds: positiveInteger('rounds', values.rounds),
          log,
        }),
      );
    } else if (benchmark === 'hotpath') {
      sections.push(
        await runHotpath({
          rate: Number(values['hotpath-rate']),
          duration: positiveInteger('duration', values.duration),
          rounds: positiveInteger('rounds', values.rounds),
          connections: positiveInteger('connections', values.connections),
          maxOtherCores: Number(values['max-other-cores']),
          tenantryNodeFlags: (values['server-node-flags'] ?? '').split(' ').filter(Boolean),
          tsx: values['hotpath-tsx'] === true,
          tenantDatabasePool: positiveInteger('hotpath-tenant-pool', values['hotpath-tenant-pool']),
          log,
        }),
      );
    } else if (benchmark === 'backup') {
      sections.push(
        await runBackup(
          {
            rows: positiveInteger('backup-rows', values['backup-rows']),
            rowTenantRows: positiveInteger('backup-row-tenant-rows', values['backup-row-tenant-rows']),
            tenants: positiveInteger('backup-tenants', values['backup-tenants']),
            rounds: positiveInteger('rounds', values.rounds),
          },
          log,
        ),
      );
    } else if (benchmark === 'provisioning') {
      sections.push(
        await runProvisioning({
          samples: positiveInteger('provisioning-samples', values['provisioning-samples']),
          log,
        }),
      );
    } else if (benchmark === 'metrics-observe') {
      sections.push(benchMetricsObserve());
    } else if (benchmark === 'fleet') {
      sections.push(
        await runFleet({
          tenants: positiveInteger('fleet-tenants', values['fleet-tenants']),
          concurrencies: (values['fleet-concurrency'] ?? '4')
            .split(',')
            .map((value) => positiveInteger('fleet-concurrency', value)),
          samples: positiveInteger('fleet-samples', values['fleet-samples']),
          databases: positiveInteger('fleet-databases', values['fleet-databases']),
          baselineDatabases: positiveInteger('fleet-baseline-databases', values['fleet-baseline-databases']),
          noopRuns: positiveInteger('fleet-noop-runs', values['fleet-noop-runs']),
          log,
        }),
      );
    } else if (benchmark === 'limits' || benchmark === 'noisy-neighbour') {
      const limitsOptions = {
        connections: Math.min(20, positiveInteger('connections', values.connections)),
        duration: Math.min(10, positiveInteger('duration', values.duration)),
        rounds: positiveInteger('rounds', values.rounds),
        serverNodeFlags: (values['server-node-flags'] ?? '').split(' ').filter(Boolean),
        log,
      };
      sections.push(
        benchmark === 'limits'
          ? await runLimits(limitsOptions)
          : await runNoisyNeighbour({
              ...limitsOptions,
              floodPriority: floodPriority(),
              floodMaxConcurrent: Number(values['flood-max-concurrent']),
              floodGenerator: floodGenerator(),
            }),
      );
    } else if (benchmark === 'identity') {
      sections.push(
        await runIdentity({
          connections: Math.min(20, positiveInteger('connections', values.connections)),
          duration: Math.min(5, positiveInteger('duration', values.duration)),
          rounds: positiveInteger('rounds', values.rounds),
          log,
        }),
      );
    } else if (benchmark === 'entities') {
      sections.push(
        await runEntities({
          connections: Math.min(20, positiveInteger('connections', values.connections)),
          duration: Math.min(5, positiveInteger('duration', values.duration)),
          rounds: positiveInteger('rounds', values.rounds),
          spreadTenants: Number(values['spread-tenants']),
          log,
        }),
      );
    } else {
      const report = await benchApiKeyVerify({
        cachedCalls: positiveInteger('cached-calls', values['cached-calls']),
        slowCalls: positiveInteger('slow-calls', values['slow-calls']),
        maxOtherCores: Number(values['max-other-cores']),
        log,
      });
      sections.push(report.markdown);
    }
  }
  process.stdout.write(`${sections.join('\n\n')}\n`);
}

process.once('SIGINT', () => {
  log('interrupted: stopping the servers, dropping the scratch databases');
  stopAllChildServers()
    .then(abortFleet)
    .then(dropAllScratchDatabases)
    .finally(() => process.exit(130));
});

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exitCode = 1;
});
