import { SingleBar } from 'cli-progress';
import type { TenantryConfig } from '../../config/config-schema.js';
import { Engine } from '../../engine/engine.js';
import { DataDirInUseError } from '../../engine/open-database.js';
import { entitiesDigest } from '../../entities/entity-versions.js';
import type { MigrateOptions, MigrateProgress } from '../../isolation/fleet-migration.js';
import {
  type MigrateReportView,
  type MigrationPlanView,
  migrateReportView,
  migrationPlanView,
} from '../../isolation/migration-view.js';
import { migrateFleet } from '../../lifecycle/migrate-fleet.js';
import { planMigrations } from '../../operations/migrations/plan-migrations.js';
import { runMigrations } from '../../operations/migrations/run-migrations.js';
import type { ActionContext } from '../../runtime/actor.js';
import { withOperations } from '../engine-client.js';
import type { Output } from '../output.js';

export interface MigrateCommandOptions {
  readonly plan?: boolean;
  readonly concurrency?: number;
  readonly canary?: number;
  readonly allowDestructive?: boolean;
  readonly wait?: boolean;
  readonly lockTimeout?: number;
  readonly json?: boolean;
}

interface Streams {
  readonly stderr: NodeJS.WritableStream;
  readonly out: Output;
}

/**
 * Progress of a fleet migration: a bar on a terminal, a plain line every few seconds (and one
 * per failure) otherwise, so logs of a CI deploy stay readable.
 */
function progressReporter(
  streams: Streams,
  interactive: boolean,
): {
  update: (progress: MigrateProgress) => void;
  stop: () => void;
} {
  const started = Date.now();
  const rate = (done: number) => done / Math.max(0.001, (Date.now() - started) / 1000);
  let bar: SingleBar | undefined;
  let lastLine = 0;
  return {
    update(progress) {
      if (progress.error) streams.out.error(`failed: ${progress.unit}: ${progress.error}`);
      if (interactive) {
        if (!bar) {
          bar = new SingleBar({
            stream: streams.stderr as NodeJS.WriteStream,
            format:
              'migrating |{bar}| {value}/{total} done, {failed} failed, {remaining} left | {speed}/s | ETA {eta_formatted}',
            hideCursor: true,
          });
          bar.start(progress.total, 0, { failed: 0, remaining: progress.total, speed: '0' });
        }
        bar.update(progress.done, {
          failed: progress.failed,
          remaining: progress.total - progress.done,
          speed: rate(progress.done).toFixed(1),
        });
        return;
      }
      const now = Date.now();
      if (now - lastLine < 2_000 && progress.done < progress.total) return;
      lastLine = now;
      const perSecond = rate(progress.done);
      const eta = perSecond > 0 ? Math.ceil((progress.total - progress.done) / perSecond) : 0;
      streams.out.error(
        `migrated ${progress.done}/${progress.total} (${progress.failed} failed, ${progress.total - progress.done} left), ${perSecond.toFixed(1)}/s, ETA ${eta} s`,
      );
    },
    stop() {
      bar?.stop();
    },
  };
}

function printPlan(out: Output, plan: MigrationPlanView): void {
  if (plan.plans.length === 0) {
    out.line(`every tenant is at entity version ${plan.targetVersion}: nothing to migrate`);
    return;
  }
  out.line(
    `target: entity version ${plan.targetVersion}${plan.newVersion ? ' (new: registered when applied)' : ''}`,
  );
  for (const step of plan.plans) {
    const who = [
      step.units.shared ? 'shared tables' : '',
      step.units.row ? 'row-level tables' : '',
      step.units.schema > 0 ? `${step.units.schema} schema tenant(s)` : '',
      step.units.database > 0 ? `${step.units.database} database tenant(s)` : '',
    ].filter(Boolean);
    out.line();
    out.line(`from version ${step.fromVersion ?? 'none'}: ${who.join(', ')}`);
    for (const change of step.changes) out.line(`  - ${change}`);
    if (step.changes.length === 0) out.line('  (no table changes: the ledger moves on)');
    for (const change of step.destructive) out.line(`  ! destructive: ${change.change}`);
    for (const [level, statements] of Object.entries(step.sql)) {
      if (statements.length === 0) continue;
      out.line(`  -- ${level}:`);
      for (const statement of statements) out.line(`  ${statement.replaceAll('\n', '\n  ')};`);
    }
  }
  for (const problem of plan.problems) out.error(`cannot migrate: ${problem.message}`);
}

function printReport(out: Output, report: MigrateReportView): void {
  const parts = [
    `migrated ${report.migrated}`,
    `failed ${report.failed.length}`,
    `remaining ${report.remaining}`,
    `already current ${report.upToDate}`,
  ];
  out.line(
    `entity version ${report.targetVersion}: ${parts.join(', ')} (${(report.durationMs / 1000).toFixed(1)} s)`,
  );
  for (const failure of report.failed) out.error(`failed: ${failure.unit}: ${failure.error}`);
  if (report.canary) out.line(`canary done: check it, then run \`tenantry migrate\` again for the rest`);
  if (report.interrupted) out.error('interrupted: run `tenantry migrate` again to resume');
  else if (report.failed.length > 0)
    out.error('fix the failures and run `tenantry migrate` again: it resumes');
  const pending = report.pending;
  const removed = pending?.removed?.length ?? 0;
  if (pending && pending.repaired.length + pending.purged.length + removed + pending.failed.length > 0) {
    out.line(
      `half-done tenants: ${pending.repaired.length} provisioned, ${pending.purged.length} purged, ${removed} unfinished restores removed, ${pending.failed.length} failed`,
    );
    for (const failure of pending.failed)
      out.error(`failed to finish tenant ${failure.tenantId}: ${failure.error}`);
  }
}

function exitCodeOf(report: MigrateReportView): number {
  const failed = report.failed.length > 0 || report.interrupted || (report.pending?.failed.length ?? 0) > 0;
  return failed ? 1 : 0;
}

/** `tenantry migrate`: exit 0 when everything behind is now current, 1 on failures or interruption. */
export async function migrateCommand(
  config: TenantryConfig,
  options: MigrateCommandOptions,
  streams: Streams & { context: ActionContext; interactive: boolean },
): Promise<number> {
  const { out } = streams;
  const concurrency = options.concurrency ?? 4;
  const settings: MigrateOptions = {
    concurrency,
    ...(options.canary === undefined ? {} : { canary: options.canary }),
    ...(options.lockTimeout === undefined ? {} : { lockTimeoutMs: options.lockTimeout }),
    allowDestructive: options.allowDestructive === true,
    wait: options.wait === true,
  };
  // One owner connection per tenant in flight, plus the fleet lock and the ledger.
  const connections = Math.max(config.database.maxConnections, concurrency + 4);
  const sized: TenantryConfig = { ...config, database: { ...config.database, maxConnections: connections } };
  let engine: Engine | undefined;
  try {
    engine = await Engine.open({
      config: sized,
      ownerConnections: connections,
      redis: false,
      createDataDir: false,
    });
  } catch (error) {
    if (!(error instanceof DataDirInUseError)) throw error;
  }
  if (!engine) {
    // The embedded database is held by a running server: it migrates, the CLI waits for the result.
    const digest = entitiesDigest(config.entities);
    return withOperations(config, async (run) => {
      if (options.plan) {
        const plan = await run(planMigrations, { digest });
        if (options.json) out.json(plan);
        else printPlan(out, plan);
        return plan.problems.length > 0 ? 2 : 0;
      }
      out.error('the running server holds the embedded database: it runs the migration (no progress shown)');
      const report = await run(runMigrations, { digest, ...settings });
      if (options.json) out.json(report);
      else printReport(out, report);
      return exitCodeOf(report);
    });
  }
  try {
    if (options.plan) {
      const plan = migrationPlanView(await engine.fleet.plan());
      if (options.json) out.json(plan);
      else printPlan(out, plan);
      // A declaration that cannot be migrated fails the plan too, so a CI gate catches it.
      return plan.problems.length > 0 ? 2 : 0;
    }
    const abort = new AbortController();
    let interrupts = 0;
    const onInterrupt = () => {
      interrupts += 1;
      if (interrupts > 1) process.exit(130);
      out.error(
        'stopping after the tenants in flight (Ctrl-C again to quit at once; nothing is left half done)',
      );
      abort.abort();
    };
    process.on('SIGINT', onInterrupt);
    process.on('SIGTERM', onInterrupt);
    const progress = progressReporter(streams, streams.interactive && !options.json);
    let report: MigrateReportView;
    try {
      report = migrateReportView(
        await migrateFleet(
          engine,
          { ...settings, signal: abort.signal, onProgress: (event) => progress.update(event) },
          streams.context,
        ),
      );
    } finally {
      progress.stop();
      process.off('SIGINT', onInterrupt);
      process.off('SIGTERM', onInterrupt);
    }
    if (options.json) out.json(report);
    else printReport(out, report);
    return exitCodeOf(report);
  } finally {
    await engine.close();
  }
}
