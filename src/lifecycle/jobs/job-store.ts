import { v7 as uuidv7 } from 'uuid';
import type { Queryable } from '../../db/database.js';
import { TenantryError } from '../../errors.js';

export type JobStatus = 'running' | 'succeeded' | 'failed' | 'interrupted';

export interface JobProgress {
  readonly done: number;
  readonly total?: number;
  readonly unit: string;
}

export interface Job {
  readonly id: string;
  readonly kind: string;
  readonly tenantId: string | null;
  /**
   * `interrupted`: recorded as running, but its process stopped beating (it died or was killed);
   * what it was making was never finished, and starting it again is safe.
   */
  readonly status: JobStatus;
  readonly actor: string;
  readonly input: Readonly<Record<string, unknown>>;
  readonly progress: JobProgress | null;
  readonly result: Readonly<Record<string, unknown>> | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  readonly file: string | null;
  readonly createdAt: Date;
  readonly finishedAt: Date | null;
}

/** A running job's process renews this often; twice as long without it, the job was interrupted. */
export const HEARTBEAT_MS = 5_000;
const STALE_MS = 6 * HEARTBEAT_MS;

/** SQL true for a job whose process is still at it: running, and its heartbeat fresh. */
const ALIVE = `status = 'running' AND heartbeat_at >= now() - make_interval(secs => ${STALE_MS / 1000})`;

type JobRow = {
  id: string;
  kind: string;
  tenant_id: string | null;
  status: 'running' | 'succeeded' | 'failed';
  actor: string;
  input: Record<string, unknown>;
  progress: JobProgress | null;
  result: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
  file: string | null;
  created_at: Date | string;
  finished_at: Date | string | null;
  stale: boolean;
};

const COLUMNS = `id, kind, tenant_id, status, actor, input, progress, result, error, file, created_at, finished_at,
  status = 'running' AND NOT (${ALIVE}) AS stale`;

function jobFromRow(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind,
    tenantId: row.tenant_id,
    status: row.stale ? 'interrupted' : row.status,
    actor: row.actor,
    input: row.input,
    progress: row.progress,
    result: row.result,
    error: row.stale
      ? { code: 'interrupted', message: 'the process running it stopped; start it again' }
      : row.error,
    file: row.file,
    createdAt: new Date(row.created_at),
    finishedAt: row.finished_at === null ? null : new Date(row.finished_at),
  };
}

export interface JobFilter {
  readonly tenantId?: string;
  readonly kind?: string;
  readonly limit?: number;
}

/** The jobs table: what runs in the background, its progress and its outcome, shared by every process. */
export class JobStore {
  readonly #db: Queryable;

  constructor(db: Queryable) {
    this.#db = db;
  }

  async create(kind: string, tenantId: string | null, actor: string, input: object): Promise<Job> {
    const { rows } = await this.#db.query<JobRow>(
      `INSERT INTO tenantry.jobs (id, kind, tenant_id, status, actor, input)
       VALUES ($1, $2, $3, 'running', $4, $5::jsonb) RETURNING ${COLUMNS}`,
      [uuidv7(), kind, tenantId, actor, JSON.stringify(input)],
    );
    return jobFromRow(rows[0]!);
  }

  /** Records progress and the heartbeat; returns whether a cancel was asked for. */
  async progress(id: string, progress: JobProgress): Promise<boolean> {
    const { rows } = await this.#db.query<{ cancel: boolean }>(
      `UPDATE tenantry.jobs SET progress = $2::jsonb, heartbeat_at = now() WHERE id = $1 AND status = 'running'
       RETURNING cancel_requested_at IS NOT NULL AS cancel`,
      [id, JSON.stringify(progress)],
    );
    return rows[0]?.cancel === true;
  }

  /**
   * Asks a running job to stop; its process sees it with its next heartbeat. Refused for a job
   * that is not running any more, and for kinds that cannot stop half-way (`cancellable`).
   */
  async requestCancel(id: string, cancellable: readonly string[]): Promise<Job> {
    const job = await this.get(id);
    if (!cancellable.includes(job.kind)) {
      throw new TenantryError('conflict', `a ${job.kind} job cannot be cancelled; it finishes on its own`);
    }
    const { rowCount } = await this.#db.query(
      `UPDATE tenantry.jobs SET cancel_requested_at = coalesce(cancel_requested_at, now())
        WHERE id = $1 AND ${ALIVE}`,
      [id],
    );
    if (rowCount === 0) throw new TenantryError('conflict', `the job is ${job.status} already`);
    return job;
  }

  async succeed(id: string, result: object, file: string | null): Promise<void> {
    await this.#db.query(
      `UPDATE tenantry.jobs SET status = 'succeeded', result = $2::jsonb, file = $3, finished_at = now(), heartbeat_at = now()
        WHERE id = $1`,
      [id, JSON.stringify(result), file],
    );
  }

  async fail(id: string, error: { code: string; message: string }): Promise<void> {
    await this.#db.query(
      `UPDATE tenantry.jobs SET status = 'failed', error = $2::jsonb, finished_at = now(), heartbeat_at = now()
        WHERE id = $1`,
      [id, JSON.stringify(error)],
    );
  }

  async find(id: string): Promise<Job | undefined> {
    if (!/^[0-9a-f-]{36}$/i.test(id)) return undefined;
    const { rows } = await this.#db.query<JobRow>(`SELECT ${COLUMNS} FROM tenantry.jobs WHERE id = $1`, [id]);
    return rows[0] && jobFromRow(rows[0]);
  }

  async get(id: string): Promise<Job> {
    const job = await this.find(id);
    if (!job) throw new TenantryError('not_found', 'no such job');
    return job;
  }

  /** Newest first. */
  async list(filter: JobFilter = {}): Promise<Job[]> {
    const { rows } = await this.#db.query<JobRow>(
      `SELECT ${COLUMNS} FROM tenantry.jobs
        WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2::text IS NULL OR kind = $2)
        ORDER BY created_at DESC, id DESC LIMIT $3`,
      [filter.tenantId ?? null, filter.kind ?? null, filter.limit ?? 100],
    );
    return rows.map(jobFromRow);
  }

  /** Jobs of `kind` for `tenantId` created within the last `seconds`, and whether one still runs. */
  async recent(
    tenantId: string,
    kind: string,
    seconds: number,
  ): Promise<{ readonly count: number; readonly running: boolean }> {
    const { rows } = await this.#db.query<{ count: number; running: boolean }>(
      `SELECT count(*)::int AS count,
              coalesce(bool_or(${ALIVE}), false) AS running
         FROM tenantry.jobs WHERE tenant_id = $1 AND kind = $2 AND created_at > now() - make_interval(secs => $3)`,
      [tenantId, kind, seconds],
    );
    return { count: Number(rows[0]?.count ?? 0), running: rows[0]?.running === true };
  }
}

/**
 * Whether a job of `kind` runs somewhere now (its heartbeat is fresh), read on `db`: the caller's
 * transaction when it has one (the scheduler's: on PGlite a second statement outside it would
 * wait for it).
 */
export async function jobRunning(db: Queryable, kind: string): Promise<boolean> {
  const { rows } = await db.query(`SELECT 1 FROM tenantry.jobs WHERE kind = $1 AND ${ALIVE} LIMIT 1`, [kind]);
  return rows.length > 0;
}
