/**
 * Child process of `npm run bench -- fleet` (database tenants in use): one engine from
 * TENANTRY_CONFIG and DATABASE_URL (maxTenantConnections at its default), then one entity query
 * per database tenant of BENCH_TENANTS (comma-separated ids), twice: cold (the tenant pools
 * open) and warm. BENCH_MODE=burst issues all of a round's queries at once, `sequential` one after
 * another. The tenants are resolved before the first round, so the rounds time the pools and the
 * query, not the control-plane look-up. Prints `PHASE <name>` when a phase starts (the parent
 * samples pg_stat_activity meanwhile) and `RESULT <json>` at the end. Run with --expose-gc.
 */
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../../src/config/load-config.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';

const ids = (process.env.BENCH_TENANTS ?? '').split(',').filter(Boolean);
const mode = process.env.BENCH_MODE === 'sequential' ? 'sequential' : 'burst';
const gc = (globalThis as { gc?: () => void }).gc;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function memory(): { rss: number; heapUsed: number } {
  gc?.();
  gc?.();
  const usage = process.memoryUsage();
  return { rss: usage.rss, heapUsed: usage.heapUsed };
}

/** Announces a phase and gives the parent's sampler time to see it before anything happens. */
async function phase(name: string): Promise<void> {
  process.stdout.write(`PHASE ${name}\n`);
  await sleep(150);
}

const tenantry = await Tenantry.open({ config: loadConfig() });

async function round(): Promise<{ wallMs: number; latenciesMs: number[]; errors: number; error?: string }> {
  const latenciesMs: number[] = [];
  let errors = 0;
  let error: string | undefined;
  const one = async (id: string) => {
    const start = performance.now();
    try {
      const { rows } = await tenantry.withTenant(id, (db) =>
        db.query<{ count: string }>('SELECT count(*) FROM projects'),
      );
      if (rows.length !== 1) throw new Error(`expected one row, got ${rows.length}`);
      latenciesMs.push(performance.now() - start);
    } catch (cause) {
      errors += 1;
      error ??= cause instanceof Error ? cause.message : String(cause);
    }
  };
  const start = performance.now();
  if (mode === 'burst') await Promise.all(ids.map(one));
  else for (const id of ids) await one(id);
  return { wallMs: performance.now() - start, latenciesMs, errors, ...(error ? { error } : {}) };
}

try {
  for (const id of ids) {
    if (!(await engineOf(tenantry).resolver.tenantById(id))) throw new Error(`tenant ${id} not found`);
  }
  await phase('idle');
  const before = memory();
  await phase('cold');
  const cold = await round();
  await sleep(200);
  const afterCold = memory();
  await phase('warm');
  const warm = await round();
  await sleep(200);
  const after = memory();
  await phase('closing');
  await tenantry.close();
  process.stdout.write(
    `RESULT ${JSON.stringify({ mode, tenants: ids.length, before, afterCold, after, cold, warm })}\n`,
  );
} catch (error) {
  await tenantry.close().catch(() => undefined);
  throw error;
}
