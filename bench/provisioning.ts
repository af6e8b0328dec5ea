/**
 * Time to create one tenant (isolation issue: a row tenant under 20 ms, a schema tenant under
 * 300 ms, medians), sequential and in process, interleaved by kind so a drift of the machine hits
 * every kind alike. The API key's PBKDF2 hash, part of every creation, is timed alone between
 * creations as the baseline: on this machine its speed moves with the machine's phase, and
 * "row minus hash" is what the storage and the control plane cost.
 *
 *   npm run bench -- provisioning [--provisioning-samples=30]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { prepareApiKey } from '../src/auth/api-key-store.js';
import { loadConfig } from '../src/config/load-config.js';
import { tenantDatabaseName } from '../src/isolation/tenant-placement.js';
import { Tenantry } from '../src/tenantry.js';
import type { IsolationLevel } from '../src/tenants/tenant.js';
import { BENCH_ADMIN_TOKEN, PROJECTS_ENTITIES_YAML } from './lib/bench-tenants.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, median, percentile } from './lib/stats.js';

export interface ProvisioningTimes {
  readonly iterations: number;
  readonly times: Record<IsolationLevel, number[]>;
  /** The key hash alone, timed right after each row creation. */
  readonly hash: number[];
  /** Each row creation minus the hash timed next to it. */
  readonly rowWithoutHash: number[];
}

/** Creates `samples` row and schema tenants and a third as many database tenants, interleaved. */
export async function provisioningTimes(
  url: string,
  configFile: string,
  samples: number,
  log: (line: string) => void,
): Promise<ProvisioningTimes> {
  const config = loadConfig({
    file: configFile,
    env: { DATABASE_URL: url, TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN },
  });
  const tenantry = await Tenantry.open({ config });
  const context = { actor: { kind: 'system', id: 'bench' } } as const;
  const times: Record<IsolationLevel, number[]> = { row: [], schema: [], database: [] };
  const hash: number[] = [];
  const rowWithoutHash: number[] = [];
  const create = async (level: IsolationLevel, slug: string) => {
    const start = performance.now();
    await tenantry.tenants.create({ name: slug, slug, isolation: level }, { context });
    return performance.now() - start;
  };
  const hashOnce = async () => {
    const start = performance.now();
    await prepareApiKey(config.apiKeys.iterations);
    return performance.now() - start;
  };
  try {
    // Warm-up: first statements are planned, first pools opened, the template database built.
    for (const level of ['row', 'schema', 'database'] as const) {
      for (let i = 0; i < 3; i++) await create(level, `warm-${level}-${i}`);
    }
    for (let i = 0; i < samples; i++) {
      const row = await create('row', `prov-row-${i}`);
      const alone = await hashOnce();
      times.row.push(row);
      hash.push(alone);
      rowWithoutHash.push(row - alone);
      times.schema.push(await create('schema', `prov-schema-${i}`));
      if (i % 3 === 0) times.database.push(await create('database', `prov-database-${i}`));
    }
    log(
      `  row ${fmt(median(times.row), 1)} ms, schema ${fmt(median(times.schema), 1)} ms, database ` +
        `${fmt(median(times.database), 1)} ms, hash alone ${fmt(median(hash), 1)} ms (medians)`,
    );
    return { iterations: config.apiKeys.iterations, times, hash, rowWithoutHash };
  } finally {
    await tenantry.close();
  }
}

/** The table both this benchmark and the entity benchmark print. */
export function provisioningTable(result: ProvisioningTimes): string {
  const row = (label: string, values: readonly number[]) =>
    `| ${label} | ${values.length} | **${fmt(median(values), 1)} ms** | ${fmt(percentile(values, 90), 1)} ms |`;
  return [
    '| creating a tenant (sequential, in process) | samples | median | p90 |',
    '| --- | ---: | ---: | ---: |',
    row('row (control plane + key)', result.times.row),
    row('schema (schema, tables, policies, grants + key)', result.times.schema),
    row('database (CREATE DATABASE, tables + key)', result.times.database),
    row(`the API key's PBKDF2 hash alone (${fmt(result.iterations)} iterations)`, result.hash),
    row('row minus the hash timed next to it', result.rowWithoutHash),
  ].join('\n');
}

/** Drops the databases of the database tenants a run created, and their template databases. */
export async function dropTenantDatabases(url: string, extra: readonly string[] = []): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  const names = new Set(extra);
  try {
    await client.connect();
    const tenants = await client.query<{ id: string }>(
      "SELECT id FROM tenantry.tenants WHERE isolation = 'database'",
    );
    for (const { id } of tenants.rows) names.add(tenantDatabaseName(id));
    const templates = await client.query<{ name: string }>('SELECT name FROM tenantry.database_templates');
    for (const { name } of templates.rows) names.add(name);
  } catch {
    // A run that failed before the control plane existed created no tenant database.
  } finally {
    await client.end().catch(() => undefined);
  }
  const serverUrl = new URL(url);
  serverUrl.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: serverUrl.toString() });
  await admin.connect();
  try {
    for (const name of names) await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}

export async function runProvisioning(options: {
  readonly samples: number;
  readonly log: (line: string) => void;
}): Promise<string> {
  const database = await createScratchDatabase('provisioning');
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, PROJECTS_ENTITIES_YAML);
  try {
    options.log(`provisioning: ${options.samples} row and schema tenants, interleaved`);
    const result = await provisioningTimes(database.url, configFile, options.samples, options.log);
    return [
      '### Creating a tenant',
      '',
      provisioningTable(result),
      '',
      `Targets: row under 20 ms, schema under 300 ms (medians). Template databases and tenant databases are dropped after the run.`,
    ].join('\n');
  } finally {
    await dropTenantDatabases(database.url).catch(() => undefined);
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}
