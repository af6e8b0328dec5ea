/**
 * Fleet operations benchmark (issue 4), on a fresh control-plane database:
 *
 * 1. `tenantry.migrate` adding an optional field, then an indexed field, to N schema tenants
 *    (default 1,000), at each concurrency asked for (default 4, 2, 8); creating them first.
 * 2. A no-op migrate over the same tenants, in-process and as the whole CLI command
 *    (`node bin/tenantry.js migrate`, process start-up included; built with `npm run build` first).
 * 3. Time to create one tenant: row (the baseline), schema, database from a template (the first,
 *    which builds the template, apart) and database without templates.
 * 4. Database tenants in use: one entity query per tenant through `withTenant`, cold and warm,
 *    in a child process of its own, at 200 tenants against 10; peak server connections
 *    (pg_stat_activity), RSS and heap.
 *
 *   npm run bench -- fleet            (PostgreSQL at 127.0.0.1:5432, or BENCH_PG_URL)
 *
 * Every tenant database and template it created is dropped at the end, even on failure (they are
 * read from the control plane's tenantry.tenants and tenantry.database_templates first).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import YAML from 'yaml';
import { MIN_KEY_ITERATIONS, type TenantryConfig } from '../src/config/config-schema.js';
import { defineConfig } from '../src/config/load-config.js';
import { normaliseEntities } from '../src/entities/entity-config.js';
import type { MigrateReport } from '../src/isolation/fleet-migration.js';
import { tenantDatabaseName } from '../src/isolation/tenant-placement.js';
import { migrateFleet } from '../src/lifecycle/migrate-fleet.js';
import type { ActionContext } from '../src/runtime/actor.js';
import { engineOf, Tenantry } from '../src/tenantry.js';
import type { IsolationLevel } from '../src/tenants/tenant.js';
import { exampleDeclaration } from '../test/helpers/entities.js';
import { cpuSnapshot, machineBusyCores } from './lib/cpu-usage.js';
import { createScratchDatabase, type ScratchDatabase } from './lib/scratch-database.js';
import { fmt, median, percentile } from './lib/stats.js';

export interface FleetOptions {
  /** Schema tenants migrated (1,000 in the issue). */
  readonly tenants: number;
  /** Concurrencies of the migrations; the first is the main one. */
  readonly concurrencies: readonly number[];
  /** Tenants created per level for the provisioning times. */
  readonly samples: number;
  /** Database tenants queried, and the baseline count. */
  readonly databases: number;
  readonly baselineDatabases: number;
  /** Runs of each no-op migrate. */
  readonly noopRuns: number;
  readonly log: (line: string) => void;
}

const CONTEXT: ActionContext = { actor: { kind: 'cli', id: 'bench' } };
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSX_LOADER = import.meta.resolve('tsx');
const SERVER_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
/** The lowest iteration count the config allows, which is also its default. */
const FAST_ITERATIONS = MIN_KEY_ITERATIONS;

/** The entities of the isolation issue's example config. */
const BASE_DECLARATION = exampleDeclaration();

type Declaration = typeof BASE_DECLARATION & Record<string, { fields: Record<string, unknown> }>;

interface Change {
  readonly kind: 'optional field' | 'indexed field';
  readonly concurrency: number;
  readonly sql: string;
  /** The declaration after the change (cumulative). */
  readonly declaration: Declaration;
}

/** The migrations, in order: per concurrency an optional field, then an indexed field. */
function changes(concurrencies: readonly number[]): Change[] {
  const result: Change[] = [];
  let current = structuredClone(BASE_DECLARATION) as Declaration;
  for (const concurrency of concurrencies) {
    for (const kind of ['optional field', 'indexed field'] as const) {
      const next = structuredClone(current);
      const step = result.length + 1;
      if (kind === 'optional field') {
        next.projects.fields = { ...next.projects.fields, [`note_${step}`]: { type: 'text' } };
      } else {
        next.tasks.fields = { ...next.tasks.fields, [`priority_${step}`]: { type: 'integer', index: true } };
      }
      const sql =
        kind === 'optional field'
          ? `ALTER TABLE projects ADD COLUMN note_${step} text`
          : `ALTER TABLE tasks ADD COLUMN priority_${step} bigint + CREATE INDEX`;
      result.push({ kind, concurrency, sql, declaration: next });
      current = next;
    }
  }
  return result;
}

function engineConfig(
  url: string,
  declaration: Declaration,
  overrides: { iterations?: number; templates?: boolean; maxConnections?: number } = {},
): TenantryConfig {
  return defineConfig({
    database: {
      url,
      templates: overrides.templates ?? true,
      maxConnections: overrides.maxConnections ?? 10,
    },
    apiKeys: { iterations: overrides.iterations ?? FAST_ITERATIONS },
    entities: normaliseEntities(declaration),
  });
}

/** Runs `fn(0..count-1)` with at most `concurrency` in flight; results in index order. */
async function inParallel<T>(
  count: number,
  concurrency: number,
  fn: (index: number) => Promise<T>,
): Promise<T[]> {
  const results = new Array<T>(count);
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < count; index = next++) results[index] = await fn(index);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  return results;
}

/**
 * CPU time PostgreSQL has used so far (ms), read from /proc: every live `postgres` process plus
 * the postmaster's reaped children (backends that have exited), so it is cumulative. Undefined
 * without /proc.
 */
function postgresCpuMs(): number | undefined {
  try {
    const stats = new Map<number, { comm: string; ppid: number; fields: string[] }>();
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        stats.set(Number(entry), { comm, ppid: Number(fields[1]), fields });
      } catch {
        // The process ended meanwhile.
      }
    }
    let ticks = 0;
    for (const { comm, ppid, fields } of stats.values()) {
      if (comm !== 'postgres') continue;
      ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
      if (stats.get(ppid)?.comm !== 'postgres') ticks += Number(fields[13]) + Number(fields[14]); // cutime, cstime
    }
    return (ticks * 1000) / 100;
  } catch {
    return undefined;
  }
}

interface Cpu {
  /** Cores' worth of CPU over the interval: this process, PostgreSQL, and everything else. */
  readonly self?: number;
  readonly postgres?: number;
  readonly others?: number;
}

/** Times `fn`, with the CPU this process, PostgreSQL and everything else (other users) used meanwhile. */
async function withCpu<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number } & Cpu> {
  const before = cpuSnapshot(process.pid);
  const pgBefore = postgresCpuMs();
  const start = performance.now();
  const value = await fn();
  const ms = performance.now() - start;
  const after = cpuSnapshot(process.pid);
  const pgAfter = postgresCpuMs();
  if (!before || !after || pgBefore === undefined || pgAfter === undefined) return { value, ms };
  const busyMs =
    ((after.total - before.total - (after.idle - before.idle) - (after.steal - before.steal)) * 1000) / 100;
  const selfMs = after.processMs - before.processMs;
  const pgMs = pgAfter - pgBefore;
  return {
    value,
    ms,
    self: selfMs / ms,
    postgres: pgMs / ms,
    others: Math.max(0, busyMs - selfMs - pgMs) / ms,
  };
}

const children = new Set<ChildProcess>();
const engines = new Set<Tenantry>();
let cleanup: (() => Promise<void>) | undefined;

/** Ctrl-C: stops the children and the engines, drops every database this run created. */
export async function abortFleet(): Promise<void> {
  for (const child of children) child.kill('SIGKILL');
  await cleanup?.();
}

async function openEngine(config: TenantryConfig): Promise<Tenantry> {
  const tenantry = await Tenantry.open({ config });
  engines.add(tenantry);
  return tenantry;
}

async function closeEngine(tenantry: Tenantry | undefined): Promise<void> {
  if (!tenantry || !engines.delete(tenantry)) return;
  await tenantry.close();
}

interface ProcessResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs a process to its end (wall time from spawn to exit), with stdout lines to `onLine`. */
function runProcess(
  args: readonly string[],
  options: {
    env?: Record<string, string>;
    cwd?: string;
    onLine?: (line: string) => void;
  } = {},
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      pending += chunk.toString();
      for (let newline = pending.indexOf('\n'); newline >= 0; newline = pending.indexOf('\n')) {
        options.onLine?.(pending.slice(0, newline));
        pending = pending.slice(newline + 1);
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      children.delete(child);
      resolve({ code, stdout, stderr, ms: performance.now() - start });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// 1. Migrations over the fleet

interface Creation {
  readonly count: number;
  readonly concurrency: number;
  readonly wallMs: number;
  readonly perTenantMs: readonly number[];
  readonly cpu: Cpu;
}

async function createTenants(
  tenantry: Tenantry,
  count: number,
  concurrency: number,
  isolation: IsolationLevel,
  prefix: string,
  log: (line: string) => void,
): Promise<{ ids: string[]; creation: Creation }> {
  const perTenantMs: number[] = [];
  let done = 0;
  const measured = await withCpu(() =>
    inParallel(count, concurrency, async (index) => {
      const began = performance.now();
      const { tenant } = await tenantry.tenants.create(
        { name: `Fleet ${prefix} ${index}`, slug: `${prefix}-${index}`, isolation },
        { context: CONTEXT },
      );
      perTenantMs.push(performance.now() - began);
      done += 1;
      if (done % 100 === 0) log(`  created ${done}/${count} ${isolation} tenants`);
      return tenant.id;
    }),
  );
  return {
    ids: measured.value,
    creation: { count, concurrency, wallMs: measured.ms, perTenantMs, cpu: measured },
  };
}

interface MigrationRun {
  readonly change: Change;
  readonly tenants: number;
  readonly wallMs: number;
  readonly report: MigrateReport;
  readonly cpu: Cpu;
}

/** The CLI's sizing: one owner connection per tenant in flight, plus the fleet lock and the ledger. */
const migrateConnections = (concurrency: number) => Math.max(10, concurrency + 4);

async function migrateStep(
  url: string,
  change: Change,
  tenants: number,
  log: (line: string) => void,
): Promise<MigrationRun> {
  const tenantry = await openEngine(
    engineConfig(url, change.declaration, { maxConnections: migrateConnections(change.concurrency) }),
  );
  try {
    const plan = await engineOf(tenantry).fleet.plan();
    const planned = plan.plans.reduce((sum, step) => sum + step.units.schema, 0);
    if (planned !== tenants)
      throw new Error(`the plan covers ${planned} schema tenants, expected ${tenants}`);
    const measured = await withCpu(() =>
      migrateFleet(engineOf(tenantry), { concurrency: change.concurrency }, CONTEXT),
    );
    const report = measured.value;
    if (report.failed.length > 0) {
      throw new Error(`${report.failed.length} units failed, first: ${JSON.stringify(report.failed[0])}`);
    }
    if (report.migrated < tenants)
      throw new Error(`migrated ${report.migrated} units, expected ≥ ${tenants}`);
    log(
      `  ${change.kind} at concurrency ${change.concurrency}: ${fmt(measured.ms / 1000, 2)} s, ` +
        `${fmt((tenants * 1000) / measured.ms, 1)} tenants/s (report ${fmt(report.durationMs / 1000, 2)} s)`,
    );
    return {
      change,
      tenants,
      wallMs: measured.ms,
      report,
      cpu: measured,
    };
  } finally {
    await closeEngine(tenantry);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. No-op migrate

interface NoopResult {
  readonly inProcessMs: number[];
  readonly reportMs: number[];
  readonly openMigrateCloseMs: number[];
  readonly cliMs: number[];
  readonly cliReportMs: number[];
  readonly versionMs: number[];
  readonly nodeMs: number[];
  readonly engineImportMs: number[];
}

async function noopMigrations(
  url: string,
  declaration: Declaration,
  tenants: number,
  runs: number,
  log: (line: string) => void,
): Promise<NoopResult> {
  const result: NoopResult = {
    inProcessMs: [],
    reportMs: [],
    openMigrateCloseMs: [],
    cliMs: [],
    cliReportMs: [],
    versionMs: [],
    nodeMs: [],
    engineImportMs: [],
  };
  const config = engineConfig(url, declaration, { maxConnections: migrateConnections(4) });
  const check = (report: MigrateReport) => {
    if (report.migrated !== 0 || report.total !== 0 || report.upToDate < tenants) {
      throw new Error(`not a no-op: ${JSON.stringify(report)}`);
    }
  };
  const tenantry = await openEngine(config);
  try {
    for (let run = 0; run < runs; run++) {
      const start = performance.now();
      const report = await migrateFleet(engineOf(tenantry), { concurrency: 4 }, CONTEXT);
      result.inProcessMs.push(performance.now() - start);
      result.reportMs.push(report.durationMs);
      check(report);
    }
  } finally {
    await closeEngine(tenantry);
  }
  for (let run = 0; run < runs; run++) {
    const start = performance.now();
    const fresh = await openEngine(config);
    try {
      check(await migrateFleet(engineOf(fresh), { concurrency: 4 }, CONTEXT));
    } finally {
      await closeEngine(fresh);
    }
    result.openMigrateCloseMs.push(performance.now() - start);
  }
  log(`  in-process: median ${fmt(median(result.inProcessMs), 0)} ms`);

  // The whole command, as an operator runs it: a config file, DATABASE_URL, a fresh process.
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-fleet-'));
  try {
    const configFile = join(dir, 'tenantry.config.yaml');
    writeFileSync(configFile, YAML.stringify({ entities: declaration }));
    const env = { DATABASE_URL: url, TENANTRY_CONFIG: configFile };
    const cli = join(ROOT, 'bin', 'tenantry.js');
    for (let run = 0; run < runs; run++) {
      const version = await runProcess([cli, '--version'], { env, cwd: dir });
      if (version.code !== 0) throw new Error(`tenantry --version exited ${version.code}: ${version.stderr}`);
      result.versionMs.push(version.ms);
      result.nodeMs.push((await runProcess(['-e', ''], { cwd: dir })).ms);
      const engine = pathToFileURL(join(ROOT, 'dist', 'tenantry.js')).href;
      const imported = await runProcess(
        ['--input-type=module', '-e', `await import(${JSON.stringify(engine)})`],
        {
          cwd: dir,
        },
      );
      if (imported.code !== 0) throw new Error(`importing dist/tenantry.js failed: ${imported.stderr}`);
      result.engineImportMs.push(imported.ms);
      const migrate = await runProcess([cli, 'migrate', '--json'], { env, cwd: dir });
      if (migrate.code !== 0) {
        throw new Error(`tenantry migrate exited ${migrate.code}:\n${migrate.stdout}\n${migrate.stderr}`);
      }
      const report = JSON.parse(migrate.stdout) as MigrateReport;
      check(report);
      result.cliMs.push(migrate.ms);
      result.cliReportMs.push(report.durationMs);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  log(`  CLI: median ${fmt(median(result.cliMs), 0)} ms`);
  return result;
}

// ---------------------------------------------------------------------------------------------
// 3. Provisioning times

type ProvisionKind = 'row' | 'schema' | 'database, template' | 'database, no template';

interface Provisioning {
  readonly times: Record<ProvisionKind, number[]>;
  readonly firstTemplateMs: number;
  readonly hashMs: number;
  readonly iterations: number;
}

async function provisioningTimes(
  url: string,
  declaration: Declaration,
  samples: number,
  log: (line: string) => void,
): Promise<Provisioning> {
  // The product's default key hash, as a sign-up pays it.
  const withTemplates = await openEngine(engineConfig(url, declaration, {}));
  const iterations = withTemplates.config.apiKeys.iterations;
  const withoutTemplates = await openEngine(engineConfig(url, declaration, { templates: false }));
  try {
    const time = async (engine: Tenantry, isolation: IsolationLevel, slug: string) => {
      const start = performance.now();
      await engine.tenants.create({ name: `Provision ${slug}`, slug, isolation }, { context: CONTEXT });
      return performance.now() - start;
    };
    // The first database tenant of a version builds that version's template.
    const firstTemplateMs = await time(withTemplates, 'database', 'prov-template-first');
    log(`  first database tenant (builds the template): ${fmt(firstTemplateMs, 0)} ms`);
    const times: Record<ProvisionKind, number[]> = {
      row: [],
      schema: [],
      'database, template': [],
      'database, no template': [],
    };
    // Interleaved, so drift in the machine's speed hits every kind alike.
    for (let i = 0; i < samples; i++) {
      times.row.push(await time(withTemplates, 'row', `prov-row-${i}`));
      times.schema.push(await time(withTemplates, 'schema', `prov-schema-${i}`));
      times['database, template'].push(await time(withTemplates, 'database', `prov-tpl-${i}`));
      times['database, no template'].push(await time(withoutTemplates, 'database', `prov-notpl-${i}`));
    }
    for (const [kind, values] of Object.entries(times)) {
      log(`  ${kind}: median ${fmt(median(values), 1)} ms, p95 ${fmt(percentile(values, 95), 1)} ms`);
    }
    const { prepareApiKey } = await import('../src/auth/api-key-store.js');
    const hashes: number[] = [];
    for (let i = 0; i < 10; i++) {
      const start = performance.now();
      await prepareApiKey(iterations);
      hashes.push(performance.now() - start);
    }
    return { times, firstTemplateMs, hashMs: median(hashes), iterations };
  } finally {
    await closeEngine(withTemplates);
    await closeEngine(withoutTemplates);
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Database tenants in use

interface ProbeRound {
  readonly wallMs: number;
  readonly latenciesMs: number[];
  readonly errors: number;
  readonly error?: string;
}

interface Memory {
  readonly rss: number;
  readonly heapUsed: number;
}

interface Probe {
  readonly mode: 'burst' | 'sequential';
  readonly tenants: number;
  readonly before: Memory;
  readonly afterCold: Memory;
  readonly after: Memory;
  readonly cold: ProbeRound;
  readonly warm: ProbeRound;
  /** Peak connections of the application per phase, and by application_name at the peak. */
  readonly peaks: Record<string, { total: number; byApplication: Record<string, number> }>;
}

/**
 * Runs the probe child and samples pg_stat_activity every few milliseconds meanwhile: the
 * connections the application holds to the control plane and to the tenant databases.
 */
async function probe(
  url: string,
  configFile: string,
  ids: readonly string[],
  mode: 'burst' | 'sequential',
  databases: readonly string[],
): Promise<Probe> {
  const monitor = new pg.Client({ connectionString: SERVER_URL, application_name: 'bench-monitor' });
  await monitor.connect();
  const peaks: Probe['peaks'] = {};
  let phase = 'start';
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const { rows } = await monitor.query<{ application_name: string; count: number }>(
        `SELECT application_name, count(*)::int AS count FROM pg_stat_activity
          WHERE application_name LIKE 'tenantry%' AND datname = ANY($1) GROUP BY 1`,
        [databases],
      );
      const total = rows.reduce((sum, row) => sum + row.count, 0);
      const peak = peaks[phase];
      if (!peak || total > peak.total) {
        peaks[phase] = {
          total,
          byApplication: Object.fromEntries(rows.map((row) => [row.application_name, row.count])),
        };
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  let result: Omit<Probe, 'peaks'> | undefined;
  try {
    const run = await runProcess(
      ['--expose-gc', '--import', TSX_LOADER, serverScript('tenant-pools-probe.ts')],
      {
        env: {
          DATABASE_URL: url,
          TENANTRY_CONFIG: configFile,
          BENCH_TENANTS: ids.join(','),
          BENCH_MODE: mode,
        },
        onLine: (line) => {
          if (line.startsWith('PHASE ')) phase = line.slice(6).trim();
          if (line.startsWith('RESULT ')) result = JSON.parse(line.slice(7)) as Omit<Probe, 'peaks'>;
        },
      },
    );
    if (run.code !== 0 || !result) throw new Error(`the probe exited ${run.code}:\n${run.stderr}`);
  } finally {
    sampling = false;
    await sampler.catch(() => undefined);
    await monitor.end();
  }
  return { ...result, peaks };
}

/** A bare pg.Client connect + SELECT 1 + end, one after another: what opening a pool costs at least. */
async function bareConnects(urls: readonly string[]): Promise<number[]> {
  const times: number[] = [];
  for (const target of urls) {
    const start = performance.now();
    const client = new pg.Client({ connectionString: target });
    await client.connect();
    await client.query('SELECT 1');
    await client.end();
    times.push(performance.now() - start);
  }
  return times;
}

function withDatabase(base: string, name: string): string {
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Waits (at most `maxMs`) until other processes have left the machine alone for two seconds:
 * other sessions share it. The figures still say how much CPU others took while measuring.
 */
async function settle(log: (line: string) => void, maxMs = 10_000): Promise<void> {
  const start = performance.now();
  let quiet = 0;
  while (quiet < 2 && performance.now() - start < maxMs) {
    const busy = await machineBusyCores(1000);
    if (busy === undefined) return;
    quiet = busy <= 0.3 ? quiet + 1 : 0;
  }
  if (quiet < 2) log(`  (the machine stayed busy for ${fmt(maxMs / 1000)} s: measuring anyway)`);
}

function serverScript(name: string): string {
  return fileURLToPath(new URL(`./servers/${name}`, import.meta.url));
}

// ---------------------------------------------------------------------------------------------

/** Every database of this run: the tenant databases and templates the control plane records. */
async function recordedDatabases(url: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url });
  try {
    await client.connect();
    const { rows: tenants } = await client
      .query<{ id: string }>("SELECT id FROM tenantry.tenants WHERE isolation = 'database'")
      .catch(() => ({ rows: [] as { id: string }[] }));
    const { rows: templates } = await client
      .query<{ name: string }>('SELECT name FROM tenantry.database_templates')
      .catch(() => ({ rows: [] as { name: string }[] }));
    return [...tenants.map((row) => tenantDatabaseName(row.id)), ...templates.map((row) => row.name)];
  } catch {
    return [];
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function dropEverything(database: ScratchDatabase, known: Set<string>, log: (line: string) => void) {
  for (const child of children) child.kill('SIGKILL');
  for (const engine of [...engines]) await closeEngine(engine).catch(() => undefined);
  const names = new Set([...known, ...(await recordedDatabases(database.url))]);
  await database.drop();
  // DROP DATABASE waits for a checkpoint; concurrent drops share one, so they go 8 at a time.
  const list = [...names].filter((name) => /^tenantry_(template_)?[0-9a-f]+$/.test(name));
  const start = performance.now();
  await inParallel(list.length, 8, async (index) => {
    const admin = new pg.Client({ connectionString: SERVER_URL });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS "${list[index]}" WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  });
  log(
    `dropped ${database.name} and ${list.length} tenant and template databases in ${fmt(performance.now() - start, 0)} ms`,
  );
}

export async function runFleet(options: FleetOptions): Promise<string> {
  const { log } = options;
  log('building the CLI (npm run build) for the no-op migrate through `node bin/tenantry.js`…');
  const build = await runProcess([
    join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
    '-p',
    'tsconfig.build.json',
  ]);
  if (build.code !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);

  const database = await createScratchDatabase(`fleet_${randomBytes(4).toString('hex')}`);
  const url = database.url;
  const known = new Set<string>();
  let cleaned = false;
  cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await dropEverything(database, known, log);
  };
  const plan = changes(options.concurrencies);
  const finalDeclaration = plan.at(-1)?.declaration ?? (BASE_DECLARATION as Declaration);
  try {
    // 1. The fleet: N schema tenants at the base declaration, then the migrations.
    log(`creating ${options.tenants} schema tenants (concurrency 4, ${FAST_ITERATIONS} key iterations)…`);
    await settle(log);
    const creator = await openEngine(engineConfig(url, BASE_DECLARATION as Declaration));
    const { creation } = await createTenants(creator, options.tenants, 4, 'schema', 'fleet', log);
    await closeEngine(creator);
    log(`  ${fmt(creation.wallMs / 1000, 1)} s (${fmt((creation.count * 1000) / creation.wallMs, 1)}/s)`);

    log('migrating:');
    const migrations: MigrationRun[] = [];
    for (const change of plan) {
      await settle(log);
      migrations.push(await migrateStep(url, change, options.tenants, log));
    }

    // 2. Nothing left to do.
    log(`no-op migrate, ${options.noopRuns} runs each:`);
    await settle(log);
    const noop = await noopMigrations(url, finalDeclaration, options.tenants, options.noopRuns, log);

    // 3. One tenant at a time.
    log(`provisioning, ${options.samples} tenants per kind, interleaved:`);
    await settle(log);
    const provisioning = await provisioningTimes(url, finalDeclaration, options.samples, log);

    // 4. Database tenants in use.
    log(`creating ${options.databases} database tenants (from the template, concurrency 4)…`);
    const creatorDb = await openEngine(engineConfig(url, finalDeclaration));
    const { ids: databaseIds, creation: databaseCreation } = await createTenants(
      creatorDb,
      options.databases,
      4,
      'database',
      'fleetdb',
      log,
    );
    for (const id of databaseIds) known.add(tenantDatabaseName(id));
    await closeEngine(creatorDb);
    log(`  ${fmt(databaseCreation.wallMs / 1000, 1)} s`);
    const dir = mkdtempSync(join(tmpdir(), 'tenantry-fleet-'));
    const probes: Probe[] = [];
    try {
      const configFile = join(dir, 'tenantry.config.yaml');
      writeFileSync(configFile, YAML.stringify({ entities: finalDeclaration }));
      const watched = [database.name, ...databaseIds.map(tenantDatabaseName)];
      for (const mode of ['burst', 'sequential'] as const) {
        for (const count of [options.baselineDatabases, options.databases]) {
          await settle(log);
          const result = await probe(url, configFile, databaseIds.slice(0, count), mode, watched);
          log(
            `  ${count} database tenants, ${mode}: cold ${fmt(result.cold.wallMs, 0)} ms, warm ${fmt(result.warm.wallMs, 0)} ms, ` +
              `peak ${Math.max(...Object.values(result.peaks).map((p) => p.total))} connections, ` +
              `RSS ${fmt(result.before.rss / 2 ** 20, 1)} → ${fmt(result.after.rss / 2 ** 20, 1)} MiB` +
              (result.cold.errors + result.warm.errors > 0
                ? `, ${result.cold.errors + result.warm.errors} errors (${result.cold.error ?? result.warm.error})`
                : ''),
          );
          probes.push(result);
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const connects = {
      tenant: await bareConnects(
        databaseIds.slice(0, 30).map((id) => withDatabase(url, tenantDatabaseName(id))),
      ),
      control: await bareConnects(Array.from({ length: 30 }, () => url)),
    };
    log(
      `  bare connect + SELECT 1 + end: tenant database ${fmt(median(connects.tenant), 1)} ms, control plane ${fmt(median(connects.control), 1)} ms`,
    );
    return report(options, { creation, migrations, noop, provisioning, databaseCreation, probes, connects });
  } finally {
    await cleanup();
    cleanup = undefined;
  }
}

// ---------------------------------------------------------------------------------------------

interface Results {
  readonly creation: Creation;
  readonly migrations: readonly MigrationRun[];
  readonly noop: NoopResult;
  readonly provisioning: Provisioning;
  readonly databaseCreation: Creation;
  readonly probes: readonly Probe[];
  readonly connects: { readonly tenant: readonly number[]; readonly control: readonly number[] };
}

const seconds = (ms: number, decimals = 2) => `${fmt(ms / 1000, decimals)} s`;
const mib = (bytes: number) => `${fmt(bytes / 2 ** 20, 1)} MiB`;
const cores = (value: number | undefined) => (value === undefined ? '—' : fmt(value, 2));
const met = (ok: boolean) => (ok ? 'met' : '**missed**');

function report(options: FleetOptions, results: Results): string {
  const { creation, migrations, noop, provisioning, databaseCreation, probes, connects } = results;
  const lines: string[] = [
    `### Fleet operations (issue 4)`,
    '',
    `Fresh control-plane database; entities of the isolation issue's example (projects, tasks, countries), ` +
      `tenant tables empty. Engine in this process unless said otherwise.`,
    '',
    '| creating tenants | count | concurrency | wall | tenants/s | median per tenant | p95 per tenant | cores: this process | PostgreSQL (all sessions) | other processes |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...[
      ['schema tenants (the fleet)', creation],
      ['database tenants (from the template)', databaseCreation],
    ].map(([label, c]) => {
      const run = c as Creation;
      return `| ${label as string}, ${FAST_ITERATIONS} key iterations | ${fmt(run.count)} | ${run.concurrency} | ${seconds(run.wallMs, 1)} | ${fmt((run.count * 1000) / run.wallMs, 1)} | ${fmt(median(run.perTenantMs), 1)} ms | ${fmt(percentile(run.perTenantMs, 95), 1)} ms | ${cores(run.cpu.self)} | ${cores(run.cpu.postgres)} | ${cores(run.cpu.others)} |`;
    }),
    '',
    `#### \`tenantry.migrate\` over ${fmt(options.tenants)} schema tenants (target: under 60 s)`,
    '',
    '| change | concurrency | wall | tenants/s | report `durationMs` | cores: this process | PostgreSQL (all sessions) | other processes | target |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...migrations.map(
      (m) =>
        `| ${m.change.kind} (\`${m.change.sql}\`) | ${m.change.concurrency} | ${seconds(m.wallMs)} | ${fmt((m.tenants * 1000) / m.wallMs, 1)} | ${seconds(m.report.durationMs)} | ${cores(m.cpu.self)} | ${cores(m.cpu.postgres)} | ${cores(m.cpu.others)} | ${met(m.wallMs < 60_000)} |`,
    ),
  ];
  const base = migrations.find((m) => m.change.concurrency === options.concurrencies[0]);
  if (base && migrations.length > 2) {
    lines.push(
      '',
      `Wall time relative to concurrency ${base.change.concurrency} (same change kind): ` +
        migrations
          .filter((m) => m.change.concurrency !== base.change.concurrency)
          .map((m) => {
            const same = migrations.find(
              (b) => b.change.concurrency === base.change.concurrency && b.change.kind === m.change.kind,
            )!;
            return `${m.change.kind} at ${m.change.concurrency}: ${fmt(m.wallMs / same.wallMs, 2)}×`;
          })
          .join(', ') +
        '.',
    );
  }
  const row = (label: string, values: readonly number[], target?: boolean) =>
    `| ${label} | ${values.length} | ${fmt(median(values), 0)} ms | ${fmt(Math.min(...values), 0)} ms | ${fmt(Math.max(...values), 0)} ms | ${target === undefined ? '' : met(target)} |`;
  lines.push(
    '',
    `#### No-op migrate over the same ${fmt(options.tenants)} tenants (target: under 2 s)`,
    '',
    '| what | runs | median | min | max | target |',
    '| --- | ---: | ---: | ---: | ---: | --- |',
    row(
      '`tenantry.migrate` in-process, engine already open (wall)',
      noop.inProcessMs,
      median(noop.inProcessMs) < 2000,
    ),
    row('of which the report’s `durationMs` (fleet part)', noop.reportMs),
    row('open the engine + `migrate` + close, in-process', noop.openMigrateCloseMs),
    row('`node bin/tenantry.js migrate --json` (whole process)', noop.cliMs, median(noop.cliMs) < 2000),
    row('of which the report’s `durationMs`', noop.cliReportMs),
    row(
      '`node bin/tenantry.js --version` (start-up alone: the CLI loads its whole module graph)',
      noop.versionMs,
    ),
    row('`node -e "await import(\'dist/tenantry.js\')"` (the engine modules only)', noop.engineImportMs),
    row('`node -e ""` (bare Node start-up)', noop.nodeMs),
  );
  const times = provisioning.times;
  const baseline = median(times.row);
  const noTemplate = median(times['database, no template']);
  lines.push(
    '',
    `#### Creating one tenant (sequential, interleaved by kind, ${options.samples} each, ${fmt(provisioning.iterations)} key iterations)`,
    '',
    '| kind | median | p95 | vs row (median) | vs database without template |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...(Object.keys(times) as ProvisionKind[]).map(
      (kind) =>
        `| ${kind} | ${fmt(median(times[kind]), 1)} ms | ${fmt(percentile(times[kind], 95), 1)} ms | ${fmt(median(times[kind]) / baseline, 2)} | ${kind.startsWith('database') ? fmt(median(times[kind]) / noTemplate, 2) : ''} |`,
    ),
    `| database, first of a version (builds the template) | ${fmt(provisioning.firstTemplateMs, 1)} ms (one) | | ${fmt(provisioning.firstTemplateMs / baseline, 2)} | ${fmt(provisioning.firstTemplateMs / noTemplate, 2)} |`,
    `| the API key's PBKDF2 hash alone | ${fmt(provisioning.hashMs, 1)} ms | | | |`,
  );
  lines.push(
    '',
    `#### ${fmt(options.databases)} database tenants in use (baseline: ${options.baselineDatabases}), maxTenantConnections 50`,
    '',
    'One `SELECT count(*) FROM projects` per tenant through `tenantry.withTenant`, in a fresh child ' +
      'process per line (tenants resolved first). Burst: all of a round at once; sequential: one ' +
      'after another. Peak: connections with application_name `tenantry%` to the control plane and ' +
      'these tenant databases (pg_stat_activity sampled every ~5 ms). RSS and heap after a full GC.',
    '',
    '| tenants | mode | cold round | warm round | cold p50 / p99 per query | warm p50 / p99 | peak connections (tenant pools) | RSS before → after | heap before → after | errors |',
    '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...probes.map((p) => {
      const peak = Object.values(p.peaks).reduce((best, item) => (item.total > best.total ? item : best), {
        total: 0,
        byApplication: {} as Record<string, number>,
      });
      const lat = (r: ProbeRound) =>
        `${fmt(median(r.latenciesMs), 1)} / ${fmt(percentile(r.latenciesMs, 99), 1)} ms`;
      return `| ${p.tenants} | ${p.mode} | ${fmt(p.cold.wallMs, 0)} ms | ${fmt(p.warm.wallMs, 0)} ms | ${lat(p.cold)} | ${lat(p.warm)} | ${peak.total} (${peak.byApplication['tenantry-tenant'] ?? 0}) | ${mib(p.before.rss)} → ${mib(p.after.rss)} | ${mib(p.before.heapUsed)} → ${mib(p.after.heapUsed)} | ${p.cold.errors + p.warm.errors} |`;
    }),
  );
  const ratios: string[] = [];
  for (const mode of ['burst', 'sequential'] as const) {
    const small = probes.find((p) => p.mode === mode && p.tenants === options.baselineDatabases);
    const large = probes.find((p) => p.mode === mode && p.tenants === options.databases);
    if (!small || !large) continue;
    const peak = (p: Probe) => Math.max(...Object.values(p.peaks).map((item) => item.total));
    ratios.push(
      `${mode}: cold round ${fmt(large.cold.wallMs / small.cold.wallMs, 1)}×, warm round ` +
        `${fmt(large.warm.wallMs / small.warm.wallMs, 1)}× (per tenant ${fmt(large.warm.wallMs / large.tenants / (small.warm.wallMs / small.tenants), 1)}×), ` +
        `peak connections ${fmt(peak(large) / peak(small), 1)}×, RSS growth ${mib(large.after.rss - large.before.rss)} vs ${mib(small.after.rss - small.before.rss)}`,
    );
  }
  if (ratios.length > 0)
    lines.push('', `${options.databases} vs ${options.baselineDatabases} tenants: ${ratios.join('; ')}.`);
  lines.push(
    '',
    `For scale, a bare \`pg.Client\` connect + \`SELECT 1\` + end, one after another, in the same run: ` +
      `median ${fmt(median(connects.tenant), 1)} ms to a tenant database (${connects.tenant.length} of them), ` +
      `${fmt(median(connects.control), 1)} ms to the control plane (${connects.control.length} times).`,
  );
  return lines.join('\n');
}
