import { isTenantryError } from '../../errors.js';
import { HEARTBEAT_MS, type Job, type JobProgress, type JobStore } from './job-store.js';

/** What a job's work gets: a way to report progress (it also keeps the job's heartbeat). */
export interface JobContext {
  readonly job: Job;
  progress(progress: JobProgress): void;
  /** Whether a cancel was asked for (seen with the heartbeat, every few seconds). */
  cancelled(): boolean;
}

/** What a job's work returns: its result, and the file it made (downloadable). */
export interface JobOutcome {
  readonly result: Record<string, unknown>;
  readonly file: string | null;
}

/**
 * Runs jobs in this process, in the background: the job is recorded first (so it can be followed
 * by id from any process), its progress and a heartbeat are written every few seconds, and its
 * outcome last. A process that dies leaves its jobs `interrupted` (their heartbeat stops); the
 * work of every kind is made so that starting it again is safe.
 */
export class JobRunner {
  readonly #store: JobStore;
  readonly #onError: (error: unknown) => void;
  readonly #running = new Set<Promise<void>>();

  constructor(store: JobStore, onError: (error: unknown) => void) {
    this.#store = store;
    this.#onError = onError;
  }

  get store(): JobStore {
    return this.#store;
  }

  /** Records a job and starts `work`; returns the job as recorded, before the work is done. */
  async start(
    kind: string,
    tenantId: string | null,
    actor: string,
    input: object,
    work: (context: JobContext) => Promise<JobOutcome>,
  ): Promise<Job> {
    // Tracked from the first moment: `idle` must wait for a job still being recorded too.
    const created = this.#store.create(kind, tenantId, actor, input);
    const running: Promise<void> = created
      .then(
        (job) => this.#run(job, work),
        () => undefined,
      )
      .finally(() => this.#running.delete(running));
    this.#running.add(running);
    return created;
  }

  /**
   * Records a job and runs `work` in the caller's flow (the CLI's move): followable and
   * cancellable like any job, its outcome returned or its error thrown.
   */
  async run(
    kind: string,
    tenantId: string | null,
    actor: string,
    input: object,
    work: (context: JobContext) => Promise<JobOutcome>,
  ): Promise<JobOutcome> {
    const job = await this.#store.create(kind, tenantId, actor, input);
    let outcome: JobOutcome | undefined;
    let failure: unknown;
    const running = this.#run(job, async (context) => {
      try {
        outcome = await work(context);
        return outcome;
      } catch (error) {
        failure = error;
        throw error;
      }
    }).finally(() => this.#running.delete(running));
    this.#running.add(running);
    await running;
    if (outcome === undefined) throw failure;
    return outcome;
  }

  async #run(job: Job, work: (context: JobContext) => Promise<JobOutcome>): Promise<void> {
    let latest: JobProgress = { done: 0, unit: '' };
    let written = 0;
    let cancelled = false;
    const beat = () => {
      written = Date.now();
      this.#store.progress(job.id, latest).then((cancel) => {
        cancelled ||= cancel;
      }, this.#onError);
    };
    const heartbeat = setInterval(beat, HEARTBEAT_MS);
    heartbeat.unref();
    const context: JobContext = {
      job,
      progress: (progress) => {
        latest = progress;
        if (Date.now() - written >= 1_000) beat();
      },
      cancelled: () => cancelled,
    };
    try {
      const outcome = await work(context);
      clearInterval(heartbeat);
      await this.#store.succeed(job.id, outcome.result, outcome.file);
    } catch (error) {
      clearInterval(heartbeat);
      const failure = isTenantryError(error)
        ? { code: error.code, message: error.message }
        : { code: 'failed', message: error instanceof Error ? error.message : String(error) };
      await this.#store.fail(job.id, failure).catch(this.#onError);
      if (!isTenantryError(error)) this.#onError(error);
    }
  }

  /** Waits for the jobs in flight (tests, and a graceful stop). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }
}
