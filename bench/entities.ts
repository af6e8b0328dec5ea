/**
 * Entity API benchmark (isolation issue): requests per second of GET by id, list of 10 and POST
 * through Tenantry for row, schema and database tenants, each against a bare Fastify + pg server
 * running the same SQL without tenancy in the same run; row level at 10 and at 10,000 tenants;
 * and the time to create row, schema and database tenants.
 *
 *   npm run bench -- entities            (PostgreSQL at 127.0.0.1:5432, or BENCH_PG_URL)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon, { type RequestSpec, type Result } from 'autocannon';
import { loadConfig } from '../src/config/load-config.js';
import { tenantDatabaseName, tenantSchemaName } from '../src/isolation/tenant-placement.js';
import { adminPost, BENCH_ADMIN_TOKEN, PROJECTS_ENTITIES_YAML } from './lib/bench-tenants.js';
import { type ChildServer, serverScript, startChildServer } from './lib/child-server.js';
import { addRowTenants, type KeyedTenant, keyedFillers, warmKeys } from './lib/filler-tenants.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';
import {
  dropTenantDatabases,
  type ProvisioningTimes,
  provisioningTable,
  provisioningTimes,
} from './provisioning.js';

declare module 'autocannon' {
  interface RequestSpec {
    readonly method?: string;
    readonly path?: string;
    readonly headers?: Readonly<Record<string, string>>;
    readonly body?: string;
    readonly setupRequest?: (request: RequestSpec) => RequestSpec;
  }
  interface Options {
    readonly requests?: readonly RequestSpec[];
  }
}

export interface EntitiesOptions {
  /** At 10,000 tenants, also GET by id spread over this many tenants, each with its own key (0: not). */
  readonly spreadTenants: number;
  readonly connections: number;
  readonly duration: number;
  readonly rounds: number;
  readonly log: (line: string) => void;
}

interface Workload {
  readonly name: 'GET by id' | 'list of 10' | 'POST';
  readonly requests: (ids: readonly string[], headers: Record<string, string>) => RequestSpec[];
}

let postCounter = 0;
const WORKLOADS: readonly Workload[] = [
  {
    name: 'GET by id',
    requests: (ids, headers) => [
      {
        method: 'GET',
        headers,
        setupRequest: (request) => ({
          ...request,
          path: `/api/v1/projects/${ids[Math.floor(Math.random() * ids.length)]}`,
        }),
      },
    ],
  },
  {
    name: 'list of 10',
    requests: (_ids, headers) => [{ method: 'GET', path: '/api/v1/projects?limit=10', headers }],
  },
  {
    name: 'POST',
    requests: (_ids, headers) => [
      {
        method: 'POST',
        path: '/api/v1/projects',
        headers: { ...headers, 'content-type': 'application/json' },
        setupRequest: (request) => ({
          ...request,
          body: JSON.stringify({ name: `bench-${process.pid}-${postCounter++}-${Math.random()}` }),
        }),
      },
    ],
  },
];

async function load(
  url: string,
  requests: RequestSpec[],
  options: EntitiesOptions,
  duration = options.duration,
) {
  const result: Result = await autocannon({
    url,
    connections: options.connections,
    duration,
    pipelining: 1,
    requests,
  });
  const ok = (result['2xx'] ?? 0) / Math.max(1, result.requests.total);
  if (ok < 0.99) throw new Error(`${url}: only ${fmt(ok * 100, 1)} % of responses were 2xx`);
  return result;
}

interface Measured {
  readonly level: string;
  readonly workload: string;
  readonly bare: number;
  readonly tenantry: number;
  readonly bareP99: number;
  readonly tenantryP99: number;
  /** Tenantry / bare of each round, the two runs adjacent in time. */
  readonly roundRatios: readonly number[];
}

async function compare(
  level: string,
  tenantryServer: ChildServer,
  bare: ChildServer,
  ids: readonly string[],
  key: string,
  options: EntitiesOptions,
  workloads: readonly Workload[] = WORKLOADS,
): Promise<Measured[]> {
  const results: Measured[] = [];
  for (const workload of workloads) {
    const bareRuns: Result[] = [];
    const tenantryRuns: Result[] = [];
    await load(bare.url, workload.requests(ids, {}), options, 2);
    await load(tenantryServer.url, workload.requests(ids, { 'x-api-key': key }), options, 2);
    const roundRatios: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      // Alternate which side goes first: the machine drifts within a round too.
      const runBare = () => load(bare.url, workload.requests(ids, {}), options);
      const runTenantry = () =>
        load(tenantryServer.url, workload.requests(ids, { 'x-api-key': key }), options);
      let b: Result;
      let t: Result;
      if (round % 2 === 0) {
        b = await runBare();
        t = await runTenantry();
      } else {
        t = await runTenantry();
        b = await runBare();
      }
      bareRuns.push(b);
      tenantryRuns.push(t);
      roundRatios.push(t.requests.average / b.requests.average);
    }
    const measured: Measured = {
      level,
      workload: workload.name,
      bare: median(bareRuns.map((r) => r.requests.average)),
      tenantry: median(tenantryRuns.map((r) => r.requests.average)),
      roundRatios,
      bareP99: median(bareRuns.map((r) => r.latency.p99)),
      tenantryP99: median(tenantryRuns.map((r) => r.latency.p99)),
    };
    options.log(
      `  ${level} ${workload.name}: bare ${fmt(measured.bare)} req/s, tenantry ${fmt(measured.tenantry)} req/s, ratio ${fmt(measured.tenantry / measured.bare, 2)}; per round ${roundRatios.map((r) => fmt(r, 2)).join(', ')}`,
    );
    results.push(measured);
  }
  return results;
}

/** GET by id of a random project of a random tenant among `tenants` (bare: of its one tenant). */
function spreadGetById(tenants: readonly KeyedTenant[]): Workload {
  const pick = <T>(items: readonly T[]) => items[Math.floor(Math.random() * items.length)]!;
  return {
    name: 'GET by id',
    requests: (bareIds, headers) => [
      {
        method: 'GET',
        setupRequest: (request) => {
          if (headers['x-api-key'] === undefined)
            return { ...request, headers, path: `/api/v1/projects/${pick(bareIds)}` };
          const tenant = pick(tenants);
          return {
            ...request,
            headers: { 'x-api-key': tenant.key },
            path: `/api/v1/projects/${pick(tenant.ids)}`,
          };
        },
      },
    ],
  };
}

export async function runEntities(options: EntitiesOptions): Promise<string> {
  const log = options.log;
  const database = await createScratchDatabase('entities');
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, PROJECTS_ENTITIES_YAML);
  const env = {
    DATABASE_URL: database.url,
    TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
    TENANTRY_CONFIG: configFile,
  };
  const servers: ChildServer[] = [];
  const createdDatabases: string[] = [];
  try {
    const server = await startChildServer(serverScript('entity-server.ts'), env);
    servers.push(server);
    const measured: Measured[] = [];
    const levelTenants: Record<string, { id: string; key: string; ids: string[] }> = {};
    for (let i = 0; i < 7; i++)
      await adminPost(server.url, '/admin/tenants', { name: `Row ${i}`, slug: `row-extra-${i}` });
    for (const level of ['row', 'schema', 'database'] as const) {
      const created = await adminPost(server.url, '/admin/tenants', {
        name: level,
        slug: `bench-${level}`,
        isolation: level,
      });
      const tenant = created.tenant as { id: string };
      const key = (created.apiKey as { key: string }).key;
      if (level === 'database') createdDatabases.push(tenantDatabaseName(tenant.id));
      const rows = Array.from({ length: 200 }, (_, n) => ({ name: `seed-${n}` }));
      const response = await fetch(`${server.url}/api/v1/projects/batch`, {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ rows }),
      });
      const items = ((await response.json()) as { items: { id: string }[] }).items;
      levelTenants[level] = { id: tenant.id, key, ids: items.map((item) => item.id) };
    }
    log('entity API at 10 tenants (7 row + 1 row, 1 schema, 1 database measured):');
    for (const level of ['row', 'schema', 'database'] as const) {
      const tenant = levelTenants[level]!;
      const bareEnv = {
        BENCH_DB_URL:
          level === 'database' ? dbUrl(database.url, tenantDatabaseName(tenant.id)) : database.url,
        BENCH_TABLE: level === 'schema' ? `"${tenantSchemaName(tenant.id)}".projects` : 'app.projects',
        BENCH_TENANT: tenant.id,
      };
      const bare = await startChildServer(serverScript('entity-bare-server.ts'), bareEnv);
      servers.push(bare);
      measured.push(...(await compare(level, server, bare, tenant.ids, tenant.key, options)));
      await bare.stop();
    }

    // The same row workload against the two other sides of the prepared-statement question:
    // a bare server that prepares its statement too, and Tenantry preparing nothing.
    log('row GET by id, prepared statements on the other side:');
    const rowTenant = levelTenants.row!;
    const rowBareEnv = {
      BENCH_DB_URL: database.url,
      BENCH_TABLE: 'app.projects',
      BENCH_TENANT: rowTenant.id,
    };
    const preparedBare = await startChildServer(serverScript('entity-bare-server.ts'), {
      ...rowBareEnv,
      BENCH_PREPARED: '1',
    });
    servers.push(preparedBare);
    measured.push(
      ...(await compare(
        'row, bare prepares too',
        server,
        preparedBare,
        rowTenant.ids,
        rowTenant.key,
        options,
        [WORKLOADS[0]!],
      )),
    );
    await preparedBare.stop();
    const unpreparedFile = join(dir, 'unprepared.config.yaml');
    writeFileSync(unpreparedFile, `${PROJECTS_ENTITIES_YAML}\ndatabase:\n  statementCacheSize: 0\n`);
    const unprepared = await startChildServer(serverScript('entity-server.ts'), {
      ...env,
      TENANTRY_CONFIG: unpreparedFile,
    });
    servers.push(unprepared);
    const plainBare = await startChildServer(serverScript('entity-bare-server.ts'), rowBareEnv);
    servers.push(plainBare);
    measured.push(
      ...(await compare(
        'row, Tenantry prepares nothing',
        unprepared,
        plainBare,
        rowTenant.ids,
        rowTenant.key,
        options,
        [WORKLOADS[0]!],
      )),
    );
    await plainBare.stop();
    await unprepared.stop();

    log('adding 9,990 row tenants with 10 projects each…');
    await addRowTenants(database.url, 9_990, 10);
    const row = levelTenants.row!;
    const bare = await startChildServer(serverScript('entity-bare-server.ts'), {
      BENCH_DB_URL: database.url,
      BENCH_TABLE: 'app.projects',
      BENCH_TENANT: row.id,
    });
    servers.push(bare);
    const atScale = await compare('row @ 10,000 tenants', server, bare, row.ids, row.key, options, [
      WORKLOADS[0]!,
    ]);
    if (options.spreadTenants > 0) {
      const iterations = loadConfig({
        file: configFile,
        env: { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN },
      }).apiKeys.iterations;
      log(`giving ${fmt(options.spreadTenants)} of the 10,000 tenants an API key each…`);
      const spread = await keyedFillers(database.url, options.spreadTenants, iterations, log);
      log('first use of each key (its slow hash)…');
      await warmKeys(server.url, spread);
      atScale.push(
        ...(await compare(
          `row @ 10,000 tenants, spread over ${fmt(spread.length)}`,
          server,
          bare,
          row.ids,
          row.key,
          options,
          [spreadGetById(spread)],
        )),
      );
    }
    await bare.stop();
    await server.stop();

    log('provisioning (in-process engine, sequential):');
    const provisioning = await provisioningTimes(database.url, configFile, 30, log);
    return report(measured, atScale, provisioning, options);
  } finally {
    for (const server of servers) await server.stop().catch(() => undefined);
    await dropTenantDatabases(database.url, createdDatabases);
    await database.drop();
  }
}

function dbUrl(base: string, name: string): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

function report(
  measured: readonly Measured[],
  atScale: readonly Measured[],
  provisioning: ProvisioningTimes,
  options: EntitiesOptions,
): string {
  const lines = [
    `| level | workload | bare req/s | Tenantry req/s | ratio of medians | median of round ratios | round ratios | bare p99 | Tenantry p99 |`,
    '| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |',
    ...[...measured, ...atScale].map(
      (m) =>
        `| ${m.level} | ${m.workload} | ${fmt(m.bare)} | ${fmt(m.tenantry)} | ${fmt(m.tenantry / m.bare, 2)} | **${fmt(median(m.roundRatios), 2)}** | ${m.roundRatios.map((r) => fmt(r, 2)).join(', ')} | ${fmt(m.bareP99, 1)} ms | ${fmt(m.tenantryP99, 1)} ms |`,
    ),
  ];
  const row10 = measured.find((m) => m.level === 'row' && m.workload === 'GET by id')!;
  const row10k = atScale[0]!;
  lines.push(
    '',
    `Row level GET by id at 10,000 tenants vs 10 tenants: ${fmt(row10k.tenantry, 0)} vs ${fmt(row10.tenantry, 0)} req/s (${fmt(row10k.tenantry / row10.tenantry, 2)}, measured minutes apart); each against bare Fastify in its own rounds, which cancels the machine's drift: ${fmt(median(row10k.roundRatios), 2)} vs ${fmt(median(row10.roundRatios), 2)} (**${fmt(median(row10k.roundRatios) / median(row10.roundRatios), 2)}**).`,
    '',
    provisioningTable(provisioning),
    '',
    `Settings: ${options.connections} connections, ${options.duration} s per run, ${options.rounds} rounds per target (medians), 2 s warm-up per workload.`,
  );
  return lines.join('\n');
}
