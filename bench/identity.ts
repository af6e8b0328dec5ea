/**
 * Identity benchmark (issue 5): requests per second of an entity GET by id on a row tenant
 * with a session token, with an API key, and without authentication (the same repository read in
 * a scope that admits a caller known only by its host), interleaved in one run.
 *
 *   npm run bench -- identity          (PostgreSQL at 127.0.0.1:5432, or BENCH_PG_URL)
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import autocannon, { type RequestSpec, type Result } from 'autocannon';
import { BENCH_ADMIN_TOKEN, PROJECTS_ENTITIES_YAML } from './lib/bench-tenants.js';
import { type ChildServer, serverScript, startChildServer } from './lib/child-server.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';

const PASSWORD = 'a benchmark password';

export interface IdentityBenchOptions {
  readonly connections: number;
  readonly duration: number;
  readonly rounds: number;
  readonly log: (line: string) => void;
}

interface Mode {
  readonly name: 'no authentication' | 'API key' | 'session token';
  readonly prefix: string;
  readonly headers: Record<string, string>;
}

async function call(url: string, path: string, init: RequestInit): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}${path}`, init);
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as Record<string, unknown>;
}

async function load(
  url: string,
  mode: Mode,
  ids: readonly string[],
  options: IdentityBenchOptions,
  duration: number,
) {
  const request: RequestSpec = {
    method: 'GET',
    headers: mode.headers,
    setupRequest: (spec) => ({
      ...spec,
      path: `${mode.prefix}/${ids[Math.floor(Math.random() * ids.length)]}`,
    }),
  };
  const result: Result = await autocannon({
    url,
    connections: options.connections,
    duration,
    pipelining: 1,
    requests: [request],
  });
  const ok = (result['2xx'] ?? 0) / Math.max(1, result.requests.total);
  if (ok < 0.99) throw new Error(`${mode.name}: only ${fmt(ok * 100, 1)} % of responses were 2xx`);
  return result;
}

export async function runIdentity(options: IdentityBenchOptions): Promise<string> {
  const database = await createScratchDatabase('identity');
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-identity-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, PROJECTS_ENTITIES_YAML);
  let server: ChildServer | undefined;
  try {
    server = await startChildServer(serverScript('app-server.ts'), {
      DATABASE_URL: database.url,
      TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
      TENANTRY_CONFIG: configFile,
      LOG_LEVEL: 'silent',
    });
    const admin = { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, 'content-type': 'application/json' };
    const created = await call(server.url, '/admin/tenants', {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'Bench', slug: 'bench' }),
    });
    const key = (created.apiKey as { key: string }).key;
    const host = 'bench.localhost';
    const ids: string[] = [];
    for (let i = 0; i < 100; i += 1) {
      const row = await call(server.url, '/api/v1/projects', {
        method: 'POST',
        headers: { 'x-api-key': key, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `project ${i}` }),
      });
      ids.push(row.id as string);
    }
    await call(server.url, '/api/v1/users', {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'bench@bench.test', password: PASSWORD, roles: ['tenant-admin'] }),
    });
    const session = await call(server.url, '/auth/login', {
      method: 'POST',
      headers: { host, 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'bench@bench.test', password: PASSWORD }),
    });
    const modes: Mode[] = [
      { name: 'no authentication', prefix: '/open/projects', headers: { host } },
      { name: 'API key', prefix: '/api/v1/projects', headers: { 'x-api-key': key } },
      {
        name: 'session token',
        prefix: '/api/v1/projects',
        headers: { authorization: `Bearer ${session.token as string}` },
      },
    ];
    for (const mode of modes) await load(server.url, mode, ids, options, 2);
    const runs = new Map<string, Result[]>(modes.map((mode) => [mode.name, []]));
    for (let round = 0; round < options.rounds; round += 1) {
      for (const mode of modes) {
        const result = await load(server.url, mode, ids, options, options.duration);
        runs.get(mode.name)!.push(result);
        options.log(
          `  round ${round + 1} ${mode.name}: ${fmt(result.requests.average)} req/s, p99 ${result.latency.p99} ms`,
        );
      }
    }
    const baseline = median(runs.get('no authentication')!.map((result) => result.requests.average));
    const lines = [
      '### Entity GET by id: session token and API key vs no authentication',
      '',
      `${options.rounds} interleaved rounds of ${options.duration} s, ${options.connections} connections, medians; one server process, PostgreSQL 15 on the same 2 vCPUs.`,
      '',
      '| caller | req/s | p99 ms | ratio to no authentication |',
      '| --- | ---: | ---: | ---: |',
    ];
    for (const mode of modes) {
      const results = runs.get(mode.name)!;
      const rate = median(results.map((result) => result.requests.average));
      const p99 = median(results.map((result) => result.latency.p99));
      lines.push(`| ${mode.name} | ${fmt(rate)} | ${fmt(p99, 1)} | ${fmt(rate / baseline, 2)} |`);
    }
    return lines.join('\n');
  } finally {
    await server?.stop();
    await database.drop();
  }
}
