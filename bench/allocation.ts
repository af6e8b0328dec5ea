/**
 * JavaScript heap allocated per request (diagnosis for the young-generation pauses behind the
 * noisy-neighbour tail, and a figure that does not drift with the machine's load):
 *
 *   npm run bench -- allocation [--allocation-requests=4000] [--rounds=3] [--allocation-sources=25]
 *
 * Every server runs with a young generation of 256 MB, so a sample of a few thousand requests
 * fits without a collection; the server's heap probe (`bench/servers/heap-probe.ts`) collects the
 * heap before the sample and reads how much it grew after. A sample during which a collection ran
 * anyway is discarded and taken again. Tenantry's routes are compared with bare Fastify answering
 * the same `/tenant-info` JSON and a bare Fastify + pg server running the same SQL.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon, { type RequestSpec } from 'autocannon';
import { adminPost, BENCH_ADMIN_TOKEN, PROJECTS_ENTITIES_YAML } from './lib/bench-tenants.js';
import { type ChildServer, serverScript, startChildServer } from './lib/child-server.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';

const CONFIG_YAML = `${PROJECTS_ENTITIES_YAML}rateLimits:
  redisPrefix: "tenantry-bench-alloc-${process.pid}:"
`;
/** Room for a sample without a collection: 256 MB of young generation against ~30 KB a request. */
const PROBED_NODE_FLAGS = ['--expose-gc', '--min-semi-space-size=256', '--max-semi-space-size=256'];
const ATTEMPTS = 3;
/** Tenants, each with its own key, that the spread target's reads are spread over. */
const SPREAD_TENANTS = 200;

export interface AllocationOptions {
  readonly requests: number;
  readonly rounds: number;
  /** After the rounds, the costliest allocating functions of each Tenantry target (0: none). */
  readonly sources: number;
  readonly log: (line: string) => void;
}

interface Target {
  readonly name: string;
  readonly server: ChildServer;
  readonly requests: RequestSpec[];
  /** The status every response must have (a refusal target expects 429). */
  readonly status: number;
  /** Answers with another status allowed (the refused tenant's bucket refills once a second). */
  readonly tolerance?: number;
  readonly baseline?: string;
}

interface ProbeAnswer {
  readonly grown: number;
  readonly collections: number;
  readonly sources?: Record<string, number>;
}

async function seededTenant(url: string, slug: string, limits?: Record<string, number>, rows = 100) {
  const created = await adminPost(url, '/admin/tenants', {
    name: slug,
    slug,
    ...(limits ? { config: { limits } } : {}),
  });
  const tenant = created.tenant as { id: string };
  const key = (created.apiKey as { key: string }).key;
  const response = await fetch(`${url}/api/v1/projects/batch`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ rows: Array.from({ length: rows }, (_, n) => ({ name: `seed-${n}` })) }),
  });
  if (!response.ok) throw new Error(`seeding ${slug}: ${response.status} ${await response.text()}`);
  const items = ((await response.json()) as { items: { id: string }[] }).items;
  return { id: tenant.id, key, ids: items.map((item) => item.id) };
}

const byId = (ids: readonly string[], headers: Record<string, string>): RequestSpec[] => [
  {
    method: 'GET',
    headers,
    setupRequest: (request) => ({
      ...request,
      path: `/api/v1/projects/${ids[Math.floor(Math.random() * ids.length)]}`,
    }),
  },
];

let posted = 0;
const creates = (headers: Record<string, string>): RequestSpec[] => [
  {
    method: 'POST',
    path: '/api/v1/projects',
    headers: { ...headers, 'content-type': 'application/json' },
    setupRequest: (request) => {
      posted += 1;
      return { ...request, body: JSON.stringify({ name: `alloc-${posted}` }) };
    },
  },
];

/** Sends `amount` requests over 10 connections; throws unless every answer has `status`. */
async function send(target: Target, amount: number): Promise<void> {
  const result = await autocannon({
    url: target.server.url,
    connections: 10,
    amount,
    requests: target.requests,
  });
  const statuses = result.statusCodeStats;
  const expected = statuses[String(target.status)]?.count ?? 0;
  if (expected < amount - (target.tolerance ?? 0)) {
    throw new Error(
      `${target.name}: ${expected} of ${amount} answers were ${target.status} (${JSON.stringify(statuses)})`,
    );
  }
}

/**
 * Bytes the server's heap grew per request over one sample without a collection; a sample during
 * which one ran is taken again with half the requests.
 */
async function sample(target: Target, amount: number): Promise<number> {
  for (let attempt = 1, size = amount; attempt <= ATTEMPTS; attempt++, size = Math.ceil(size / 2)) {
    await target.server.ask({ heapProbe: 'start' });
    await send(target, size);
    const answer = (await target.server.ask({ heapProbe: 'stop' })) as ProbeAnswer;
    if (answer.collections === 0) return answer.grown / size;
  }
  throw new Error(`${target.name}: a collection ran during each of ${ATTEMPTS} samples; send fewer requests`);
}

export async function benchAllocation(options: AllocationOptions): Promise<string> {
  const { log } = options;
  const database = await createScratchDatabase('allocation');
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-alloc-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, CONFIG_YAML);
  const servers: ChildServer[] = [];
  const start = async (script: string, env: Record<string, string>) => {
    const server = await startChildServer(serverScript(script), env, PROBED_NODE_FLAGS, { ipc: true });
    servers.push(server);
    return server;
  };
  try {
    log('allocation: starting Tenantry and its baselines…');
    const tenantry = await start('app-server.ts', {
      DATABASE_URL: database.url,
      TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      TENANTRY_CONFIG: configFile,
      LOG_LEVEL: 'silent',
      REDIS_URL: '',
    });
    const open = await seededTenant(tenantry.url, 'alloc-open');
    // Refused from its second request on: its bucket holds one token, refilled once a second.
    const limited = await seededTenant(tenantry.url, 'alloc-limited', { requestsPerSecond: 1, burst: 1 });
    const keyed = { 'x-api-key': open.key };
    log(`allocation: ${SPREAD_TENANTS} more tenants for the spread target…`);
    const spread: { key: string; ids: string[] }[] = [];
    for (let i = 0; i < SPREAD_TENANTS; i++)
      spread.push(await seededTenant(tenantry.url, `alloc-spread-${i}`, undefined, 10));
    // Each key's first use pays its slow hash: before anything is counted.
    for (const tenant of spread) {
      await fetch(`${tenantry.url}/api/v1/projects/${tenant.ids[0]}`, {
        headers: { 'x-api-key': tenant.key },
      });
    }
    const info = await fetch(`${tenantry.url}/tenant-info`, { headers: keyed });
    const bare = await start('bare-server.ts', { BENCH_BODY: await info.text() });
    const bareEnv = { BENCH_DB_URL: database.url, BENCH_TABLE: 'app.projects', BENCH_TENANT: open.id };
    const bareSql = await start('entity-bare-server.ts', bareEnv);
    const bareSqlPrepared = await start('entity-bare-server.ts', { ...bareEnv, BENCH_PREPARED: '1' });
    const list = (headers: Record<string, string>): RequestSpec[] => [
      { method: 'GET', path: '/api/v1/projects?limit=10', headers },
    ];
    const targets: Target[] = [
      {
        name: 'bare Fastify, /tenant-info',
        server: bare,
        requests: [{ method: 'GET', path: '/tenant-info' }],
        status: 200,
      },
      {
        name: 'Tenantry, /tenant-info',
        server: tenantry,
        requests: [{ method: 'GET', path: '/tenant-info', headers: keyed }],
        status: 200,
        baseline: 'bare Fastify, /tenant-info',
      },
      { name: 'bare Fastify + pg, GET by id', server: bareSql, requests: byId(open.ids, {}), status: 200 },
      {
        name: 'bare Fastify + pg prepared, GET by id',
        server: bareSqlPrepared,
        requests: byId(open.ids, {}),
        status: 200,
      },
      {
        name: 'Tenantry, row GET by id',
        server: tenantry,
        requests: byId(open.ids, keyed),
        status: 200,
        baseline: 'bare Fastify + pg, GET by id',
      },
      {
        name: `Tenantry, row GET by id spread over ${SPREAD_TENANTS} tenants`,
        server: tenantry,
        requests: [
          {
            method: 'GET',
            setupRequest: (request) => {
              const tenant = spread[Math.floor(Math.random() * spread.length)]!;
              const id = tenant.ids[Math.floor(Math.random() * tenant.ids.length)];
              return { ...request, headers: { 'x-api-key': tenant.key }, path: `/api/v1/projects/${id}` };
            },
          },
        ],
        status: 200,
        baseline: 'bare Fastify + pg, GET by id',
      },
      { name: 'bare Fastify + pg, list of 10', server: bareSql, requests: list({}), status: 200 },
      {
        name: 'Tenantry, row list of 10',
        server: tenantry,
        requests: list(keyed),
        status: 200,
        baseline: 'bare Fastify + pg, list of 10',
      },
      { name: 'bare Fastify + pg, POST', server: bareSql, requests: creates({}), status: 201 },
      {
        name: 'Tenantry, row POST',
        server: tenantry,
        requests: creates(keyed),
        status: 201,
        baseline: 'bare Fastify + pg, POST',
      },
      {
        name: 'Tenantry, GET by id refused (429)',
        server: tenantry,
        requests: byId(limited.ids, { 'x-api-key': limited.key }),
        status: 429,
        tolerance: 30,
        baseline: 'bare Fastify, /tenant-info',
      },
    ];
    // Spend the limited tenant's one token before anything is counted.
    await fetch(`${tenantry.url}/api/v1/projects/${limited.ids[0]}`, {
      headers: { 'x-api-key': limited.key },
    });
    for (const target of targets) {
      log(`  warm-up ${target.name}`);
      await send(target, options.requests);
    }
    const perRequest = new Map<string, number[]>(targets.map((target) => [target.name, []]));
    for (let round = 1; round <= options.rounds; round++) {
      for (const target of targets) {
        const bytes = await sample(target, options.requests);
        perRequest.get(target.name)!.push(bytes);
        log(`  round ${round} ${target.name}: ${fmt(bytes)} B per request`);
      }
    }
    const sourceLines: string[] = [];
    if (options.sources > 0) {
      for (const target of targets.filter((candidate) => candidate.server === tenantry)) {
        log(`  sources: ${target.name}`);
        await target.server.ask({ heapProbe: 'start', sources: true });
        await send(target, options.requests);
        const answer = (await target.server.ask({ heapProbe: 'stop' })) as ProbeAnswer;
        const top = Object.entries(answer.sources ?? {})
          .sort((a, b) => b[1] - a[1])
          .slice(0, options.sources);
        sourceLines.push(
          '',
          `${target.name}: the ${options.sources} costliest allocating functions (innermost frame; sampled every 256 bytes, so estimates), bytes per request`,
          '',
          '| function | bytes per request |',
          '| --- | ---: |',
          ...top.map(([source, bytes]) => `| \`${source}\` | ${fmt(bytes / options.requests)} |`),
        );
      }
    }
    const bytesOf = (name: string) => median(perRequest.get(name)!);
    const lines = [
      '### JavaScript heap allocated per request',
      '',
      `${options.rounds} rounds of ${fmt(options.requests)} requests over 10 connections per target, medians; each server with a 256 MB young generation and no collection during a sample.`,
      '',
      '| server, request | bytes per request | rounds | vs its baseline |',
      '| --- | ---: | --- | ---: |',
      ...targets.map((target) => {
        const bytes = bytesOf(target.name);
        const versus = target.baseline
          ? `${fmt(bytes / bytesOf(target.baseline), 2)}× ${target.baseline}`
          : 'baseline';
        const rounds = perRequest
          .get(target.name)!
          .map((value) => fmt(value))
          .join(', ');
        return `| ${target.name} | ${fmt(bytes)} | ${rounds} | ${versus} |`;
      }),
      ...sourceLines,
    ];
    return lines.join('\n');
  } finally {
    for (const server of servers) await server.stop().catch(() => undefined);
    await database.drop();
  }
}
