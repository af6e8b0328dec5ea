import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { ConnectionPool, Queryable } from '../db/database.js';

/** A job that runs once per interval across every process sharing the database. */
export interface ScheduledJob {
  readonly name: string;
  readonly everyMs: number;
  /** Runs inside the job's transaction; what it writes commits with the record of the run. */
  run(tx: Queryable): Promise<Record<string, unknown>>;
  /**
   * Runs after that transaction committed, in this process only: long work (it must not hold the
   * transaction, nor, on PGlite, the one session) is started from here, as a background job.
   */
  afterCommit?(result: Record<string, unknown>): void;
}

export interface JobRun {
  readonly job: string;
  readonly ran: boolean;
  readonly result?: Record<string, unknown>;
}

export interface SchedulerOptions {
  /** How often each process looks whether a job is due (default 10 minutes). */
  readonly checkEveryMs?: number;
  readonly onRun?: (run: JobRun) => void;
  readonly onError?: (error: unknown) => void;
}

/**
 * Cluster-wide jobs without a coordinator. Every process checks now and then; the one that
 * takes the job's lock (a transaction-level advisory lock, try-only) and finds it due runs it,
 * and records the time in `tenantry.settings` in the same transaction. Others skip: a job runs
 * once per interval however many processes there are, and a crash mid-run leaves it due.
 */
export class Scheduler {
  readonly #db: ConnectionPool;
  readonly #jobs: readonly ScheduledJob[];
  readonly #options: SchedulerOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<unknown> | undefined;

  constructor(db: ConnectionPool, jobs: readonly ScheduledJob[], options: SchedulerOptions = {}) {
    this.#db = db;
    this.#jobs = jobs;
    this.#options = options;
  }

  start(): void {
    const check = () => {
      this.#running = this.tick().catch((error: unknown) => this.#options.onError?.(error));
    };
    check();
    this.#timer = setInterval(check, this.#options.checkEveryMs ?? 600_000);
    this.#timer.unref();
  }

  /** Runs every due job this process can take; returns what happened to each. */
  async tick(now: Date = new Date()): Promise<JobRun[]> {
    const runs: JobRun[] = [];
    for (const [index, job] of this.#jobs.entries()) {
      const run = await this.#db.transaction(async (tx): Promise<JobRun> => {
        const { rows } = await tx.query<{ locked: boolean }>(
          'SELECT pg_try_advisory_xact_lock($1, $2) AS locked',
          [LOCK_NAMESPACE, LockKey.SCHEDULER_BASE + index],
        );
        if (!rows[0]?.locked) return { job: job.name, ran: false };
        const key = `scheduler.${job.name}.lastRun`;
        const last = await tx.query<{ at: string | null }>(
          "SELECT value #>> '{}' AS at FROM tenantry.settings WHERE key = $1",
          [key],
        );
        const lastRun = last.rows[0]?.at ? Date.parse(last.rows[0].at) : 0;
        if (now.getTime() - lastRun < job.everyMs) return { job: job.name, ran: false };
        const result = await job.run(tx);
        await tx.query(
          `INSERT INTO tenantry.settings (key, value) VALUES ($1, to_jsonb($2::text))
           ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()`,
          [key, now.toISOString()],
        );
        return { job: job.name, ran: true, result };
      });
      if (run.ran) {
        if (run.result) job.afterCommit?.(run.result);
        this.#options.onRun?.(run);
      }
      runs.push(run);
    }
    return runs;
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#running;
  }
}

/** Audit entries older than the retention are deleted, once a day per cluster. */
export function auditPruning(retentionDays: number, now: () => Date = () => new Date()): ScheduledJob {
  return {
    name: 'prune-audit',
    everyMs: 24 * 3_600_000,
    async run(tx) {
      const cutoff = new Date(now().getTime() - retentionDays * 86_400_000);
      const { rowCount } = await tx.query('DELETE FROM tenantry.audit_log WHERE at < $1', [cutoff]);
      return { deleted: rowCount, before: cutoff.toISOString() };
    },
  };
}
