/**
 * Diagnosis of TenantDatabases (the pools to `database` tenants), found with `npm run bench -- fleet`:
 *
 *   node --import tsx bench/tenant-pools-diagnosis.ts wake        # a timed-out waiter swallows a wake-up
 *   node --import tsx bench/tenant-pools-diagnosis.ts burst 400   # one query to each of N databases at once
 *
 * `wake`: one pool (maxConnections 2), acquireTimeoutMs 1 s. A holds the pool for 1.5 s; B waits
 * from 0 ms and times out at 1 s; C waits from 800 ms. When A ends, C should get the pool at once
 * (as it does when there is no B); it gets it at its own deadline, 1.8 s, instead.
 * `burst`: the defaults (maxConnections 50, so 25 pools; acquireTimeoutMs 10 s) over 200, 300 and
 * N bare databases; counts the queries refused as "every tenant database connection is busy".
 * Creates scratch databases named tenantry_bench_<pid>_pools_<n> and drops them at the end.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { type DatabaseLocation, TenantDatabases } from '../src/isolation/tenant-databases.js';
import { fmt, median } from './lib/stats.js';

const SERVER_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const urls = async () => ({ url: SERVER_URL, adminUrl: SERVER_URL });
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function onServer(sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

async function inParallel(count: number, concurrency: number, fn: (index: number) => Promise<void>) {
  let next = 0;
  const worker = async () => {
    for (let index = next++; index < count; index = next++) await fn(index);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
}

/** Scratch databases for the run; dropped by `drop` (8 at a time: each DROP waits for a checkpoint). */
async function scratchDatabases(count: number) {
  const names = Array.from({ length: count }, (_, index) => `tenantry_bench_${process.pid}_pools_${index}`);
  const created: string[] = [];
  const drop = () =>
    inParallel(created.length, 8, (index) =>
      onServer(`DROP DATABASE IF EXISTS ${created[index]} WITH (FORCE)`),
    );
  try {
    await inParallel(count, 4, async (index) => {
      await onServer(`CREATE DATABASE ${names[index]}`);
      created.push(names[index]!);
    });
  } catch (error) {
    await drop();
    throw error;
  }
  return { locations: names.map((database): DatabaseLocation => ({ server: 'main', database })), drop };
}

async function wake(): Promise<void> {
  const { locations, drop } = await scratchDatabases(2);
  try {
    for (const withTimedOutWaiter of [false, true, false, true]) {
      const databases = new TenantDatabases({ urls, maxConnections: 2, acquireTimeoutMs: 1_000 });
      const start = performance.now();
      const at = () => fmt(performance.now() - start, 0);
      const events: string[] = [];
      const query = (location: DatabaseLocation, sql: string) =>
        databases.use(location, 'runtime', (pool) => pool.query(sql));
      const a = query(locations[0]!, 'SELECT pg_sleep(1.5)').then(() =>
        events.push(`A released at ${at()} ms`),
      );
      const b = withTimedOutWaiter
        ? query(locations[1]!, 'SELECT 1').then(
            () => events.push(`B done at ${at()} ms`),
            (error: Error) => events.push(`B refused at ${at()} ms (${error.message})`),
          )
        : undefined;
      await sleep(800);
      const c = query(locations[1]!, 'SELECT 1').then(
        () => events.push(`C done at ${at()} ms`),
        (error: Error) => events.push(`C refused at ${at()} ms (${error.message})`),
      );
      await Promise.all([a, b, c]);
      await databases.close();
      console.log(`${withTimedOutWaiter ? 'after a waiter timed out' : 'control'}: ${events.join('; ')}`);
    }
  } finally {
    await drop();
  }
}

async function burst(count: number): Promise<void> {
  const started = performance.now();
  const { locations, drop } = await scratchDatabases(count);
  console.log(`created ${count} databases in ${fmt((performance.now() - started) / 1000, 1)} s`);
  try {
    for (const size of [...new Set([Math.min(200, count), Math.min(300, count), count])]) {
      const databases = new TenantDatabases({ urls, maxConnections: 50 });
      const latencies: number[] = [];
      const refused: number[] = [];
      const start = performance.now();
      await Promise.all(
        locations.slice(0, size).map(async (location) => {
          const began = performance.now();
          try {
            await databases.use(location, 'runtime', (pool) => pool.query('SELECT 1'));
            latencies.push(performance.now() - began);
          } catch {
            refused.push(performance.now() - began);
          }
        }),
      );
      await databases.close();
      console.log(
        `burst over ${size} databases: ${fmt(performance.now() - start, 0)} ms; ${latencies.length} answered ` +
          `(median ${fmt(median(latencies), 0)} ms, slowest ${fmt(Math.max(...latencies), 0)} ms), ` +
          `${refused.length} refused${refused.length > 0 ? ` after ${fmt(median(refused), 0)} ms` : ''}`,
      );
    }
  } finally {
    await drop();
  }
}

const [mode = 'wake', count = '400'] = process.argv.slice(2);
if (mode === 'wake') await wake();
else if (mode === 'burst') await burst(Number(count));
else throw new Error('usage: tenant-pools-diagnosis.ts wake | burst [count]');
