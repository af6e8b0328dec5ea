/**
 * Backup and restore of one tenant (lifecycle issue): a schema tenant of --backup-rows rows (1M by
 * default) backed up by Tenantry and by `pg_dump -Fc -n <schema>`, restored by Tenantry (as a new
 * schema tenant) and by `pg_restore` (into an empty database), interleaved over --rounds rounds,
 * with the peak RSS of each side. Then a row tenant's backup alone and among --backup-tenants row
 * tenants (1,000 by default, their rows in the same tables), interleaved too.
 *
 *   npm run bench -- backup [--backup-rows=1000000 --backup-row-tenant-rows=100000 --backup-tenants=1000 --rounds=3]
 *
 * Both sides are separate from their database server: Tenantry runs in this process (its RSS is
 * sampled every 20 ms and reported as its rise during the operation), pg_dump and pg_restore under
 * /usr/bin/time (their whole maximum RSS).
 */
import { spawn } from 'node:child_process';
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { loadConfig } from '../src/config/load-config.js';
import { tenantSchemaName } from '../src/isolation/tenant-placement.js';
import { backupTenantToFile } from '../src/lifecycle/tenant-backup.js';
import { restoreTenant } from '../src/lifecycle/tenant-restore.js';
import { engineOf, Tenantry } from '../src/tenantry.js';
import { BENCH_ADMIN_TOKEN } from './lib/bench-tenants.js';
import { createScratchDatabase, type ScratchDatabase } from './lib/scratch-database.js';
import { fmt, median } from './lib/stats.js';

const ENTITIES = `
entities:
  items:
    scope: tenant
    fields:
      name: { type: text, required: true }
      status: { type: enum, values: [active, archived], default: active }
      amount: { type: number }
      count: { type: integer }
      due: { type: date }
      meta: { type: json }
`;

const CONTEXT = { actor: { kind: 'system', id: 'bench' } } as const;

export interface BackupBenchOptions {
  readonly rows: number;
  readonly rowTenantRows: number;
  readonly tenants: number;
  readonly rounds: number;
}

/**
 * Runs `fn` while sampling this process's RSS; the time in ms and how far the RSS rose above where
 * it was before, in MB (the engine's own footprint is not the operation's).
 */
async function measured(fn: () => Promise<unknown>): Promise<{ ms: number; rssMb: number }> {
  const before = process.memoryUsage().rss;
  let peak = before;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 20);
  const start = performance.now();
  try {
    await fn();
  } finally {
    clearInterval(timer);
  }
  return {
    ms: performance.now() - start,
    rssMb: (Math.max(peak, process.memoryUsage().rss) - before) / 1_048_576,
  };
}

/** Runs a command under /usr/bin/time; the wall time in ms and its maximum RSS in MB. */
function timedCommand(command: string, args: string[]): Promise<{ ms: number; rssMb: number }> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn('/usr/bin/time', ['-f', '%M', command, ...args], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - start;
      if (code !== 0) return reject(new Error(`${command} exited ${code}: ${stderr}`));
      const kilobytes = Number(stderr.trim().split('\n').at(-1));
      resolve({ ms, rssMb: kilobytes / 1024 });
    });
  });
}

/**
 * Inserts `rows` rows into a tenant. Ids rise with the row number, as the UUID v7 ids Tenantry makes
 * rise with time: the primary key's order is the table's order, as in a real tenant.
 */
async function fill(tenantry: Tenantry, slug: string, rows: number): Promise<void> {
  const batch = 200_000;
  for (let from = 1; from <= rows; from += batch) {
    const to = Math.min(rows, from + batch - 1);
    await tenantry.withTenant(slug, (db) =>
      db.query(
        `INSERT INTO items (tenant_id, id, name, status, amount, count, due, meta)
         SELECT current_setting('tenantry.tenant_id')::uuid, ('01938000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid, 'item ' || n || ' é北',
                CASE WHEN n % 3 = 0 THEN 'archived' ELSE 'active' END, n * 0.37, n,
                date '2026-01-01' + (n % 365), jsonb_build_object('n', n, 'tags', jsonb_build_array('a', 'b'))
           FROM generate_series($1::int, $2::int) n`,
        [from, to],
      ),
    );
  }
}

export async function runBackup(options: BackupBenchOptions, log: (line: string) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-bench-backup-'));
  const configFile = join(dir, 'tenantry.config.yaml');
  writeFileSync(configFile, ENTITIES);
  const database = await createScratchDatabase('backup');
  const targets: ScratchDatabase[] = [];
  const open = () =>
    Tenantry.open({
      config: loadConfig({
        file: configFile,
        env: { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: BENCH_ADMIN_TOKEN },
      }),
    });
  const tenantry = await open();
  const engine = engineOf(tenantry);
  try {
    log(`filling a schema tenant with ${options.rows} rows`);
    const big = await tenantry.tenants.create(
      { name: 'big', slug: 'big', isolation: 'schema' },
      { context: CONTEXT },
    );
    await fill(tenantry, 'big', options.rows);
    await engine.db.owner.query('VACUUM ANALYZE');
    const schema = tenantSchemaName(big.tenant.id);
    const sides = {
      tenantryBackup: [] as { ms: number; rssMb: number }[],
      pgDump: [] as { ms: number; rssMb: number }[],
      tenantryRestore: [] as { ms: number; rssMb: number }[],
      pgRestore: [] as { ms: number; rssMb: number }[],
    };
    const sizes = { tenantry: 0, pgDump: 0 };
    for (let round = 0; round < options.rounds; round += 1) {
      const archive = join(dir, `big-${round}.tgz`);
      const dump = join(dir, `big-${round}.dump`);
      const backupFirst = round % 2 === 0;
      const tenantrySide = async () =>
        sides.tenantryBackup.push(
          await measured(() => backupTenantToFile(engine.archives, 'big', archive, CONTEXT)),
        );
      const dumpSide = async () =>
        sides.pgDump.push(await timedCommand('pg_dump', ['-Fc', '-n', schema, '-f', dump, database.url]));
      if (backupFirst) {
        await tenantrySide();
        await dumpSide();
      } else {
        await dumpSide();
        await tenantrySide();
      }
      sizes.tenantry = statSync(archive).size;
      sizes.pgDump = statSync(dump).size;
      const target = await createScratchDatabase(`restore_${round}`);
      targets.push(target);
      const restoreSide = async () => {
        let restoredId = '';
        sides.tenantryRestore.push(
          await measured(async () => {
            const report = await restoreTenant(engine.archives, createReadStream(archive), CONTEXT, {
              as: `big-copy-${round}`,
              isolation: 'schema',
            });
            restoredId = report.tenant.id;
          }),
        );
        await tenantry.tenants.delete({ tenant: restoredId, purge: true }, { context: CONTEXT });
      };
      const pgRestoreSide = async () =>
        sides.pgRestore.push(await timedCommand('pg_restore', ['-d', target.url, '--no-owner', dump]));
      if (backupFirst) {
        await restoreSide();
        await pgRestoreSide();
      } else {
        await pgRestoreSide();
        await restoreSide();
      }
      await target.drop();
      rmSync(archive);
      rmSync(dump);
      log(
        `round ${round + 1}: backup ${fmt(sides.tenantryBackup.at(-1)!.ms)} ms vs pg_dump ${fmt(sides.pgDump.at(-1)!.ms)} ms; ` +
          `restore ${fmt(sides.tenantryRestore.at(-1)!.ms)} ms vs pg_restore ${fmt(sides.pgRestore.at(-1)!.ms)} ms`,
      );
    }
    await tenantry.tenants.delete({ tenant: 'big', purge: true }, { context: CONTEXT });

    log(`a row tenant of ${options.rowTenantRows} rows, alone`);
    await tenantry.tenants.create({ name: 'solo', slug: 'solo', isolation: 'row' }, { context: CONTEXT });
    await fill(tenantry, 'solo', options.rowTenantRows);
    await engine.db.owner.query('VACUUM ANALYZE');
    const alone: number[] = [];
    const among: number[] = [];
    const rowFile = join(dir, 'solo.tgz');
    for (let round = 0; round < options.rounds; round += 1) {
      alone.push((await measured(() => backupTenantToFile(engine.archives, 'solo', rowFile, CONTEXT))).ms);
    }
    log(`adding ${options.tenants - 1} row tenants of ${options.rowTenantRows / 100} rows each`);
    for (let index = 1; index < options.tenants; index += 1) {
      const slug = `filler-${index}`;
      await tenantry.tenants.create({ name: slug, slug, isolation: 'row' }, { context: CONTEXT });
      await fill(tenantry, slug, Math.max(1, Math.floor(options.rowTenantRows / 100)));
    }
    await engine.db.owner.query('VACUUM ANALYZE');
    for (let round = 0; round < options.rounds; round += 1) {
      among.push((await measured(() => backupTenantToFile(engine.archives, 'solo', rowFile, CONTEXT))).ms);
    }

    const ms = (values: { ms: number }[]) => median(values.map((value) => value.ms));
    /** Each round's ratio, lowest and highest: how far one round can be trusted on this machine. */
    const spread = (ours: { ms: number }[], theirs: { ms: number }[]) => {
      const ratios = ours.map((value, index) => value.ms / theirs[index]!.ms);
      return `${fmt(Math.min(...ratios), 2)}–${fmt(Math.max(...ratios), 2)}`;
    };
    const rss = (values: { rssMb: number }[]) => Math.max(...values.map((value) => value.rssMb));
    const lines = [
      `### Backup and restore (${options.rows.toLocaleString('en')} rows, schema tenant; ${options.rounds} interleaved rounds, medians)`,
      '',
      '| | Tenantry | pg_dump -Fc / pg_restore | ratio (Tenantry / pg) | rounds | RSS: Tenantry rise / pg peak |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      `| backup | ${fmt(ms(sides.tenantryBackup))} ms | ${fmt(ms(sides.pgDump))} ms | ${fmt(ms(sides.tenantryBackup) / ms(sides.pgDump), 2)} | ${spread(sides.tenantryBackup, sides.pgDump)} | ${fmt(rss(sides.tenantryBackup))} / ${fmt(rss(sides.pgDump))} MB |`,
      `| restore | ${fmt(ms(sides.tenantryRestore))} ms | ${fmt(ms(sides.pgRestore))} ms | ${fmt(ms(sides.tenantryRestore) / ms(sides.pgRestore), 2)} | ${spread(sides.tenantryRestore, sides.pgRestore)} | ${fmt(rss(sides.tenantryRestore))} / ${fmt(rss(sides.pgRestore))} MB |`,
      `| file size | ${fmt(sizes.tenantry / 1_048_576, 1)} MB | ${fmt(sizes.pgDump / 1_048_576, 1)} MB | ${fmt(sizes.tenantry / sizes.pgDump, 2)} | | |`,
      '',
      `Row tenant of ${options.rowTenantRows.toLocaleString('en')} rows: backup ${fmt(median(alone))} ms alone, ` +
        `${fmt(median(among))} ms among ${options.tenants} row tenants (ratio ${fmt(median(among) / median(alone), 2)}, target ≤ 1.2; ` +
        `alone ${alone.map((value) => fmt(value)).join(', ')} ms; among ${among.map((value) => fmt(value)).join(', ')} ms).`,
    ];
    return lines.join('\n');
  } finally {
    await tenantry.close();
    for (const target of targets) await target.drop().catch(() => undefined);
    await database.drop();
    rmSync(dir, { recursive: true, force: true });
  }
}
