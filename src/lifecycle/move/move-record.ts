import type { Queryable } from '../../db/database.js';
import type { IsolationLevel } from '../../tenants/tenant.js';

/** A place a tenant's rows can be: a level, and the server of a database tenant. */
export interface Place {
  readonly isolation: IsolationLevel;
  readonly server: string | null;
}

export function placeOf(tenant: {
  readonly isolation: IsolationLevel;
  readonly server: string | null;
}): Place {
  return { isolation: tenant.isolation, server: tenant.server };
}

export function samePlace(a: Place, b: Place): boolean {
  return (
    a.isolation === b.isolation &&
    (a.isolation !== 'database' || (a.server ?? 'main') === (b.server ?? 'main'))
  );
}

/**
 * A move in progress, as the control plane records it. The tenant row says which copy serves;
 * this says where the other one is: `copying`, the target being filled (dropped by a rollback);
 * `flipped`, the source kept sealed until it is dropped (after the grace period, or `--finish`).
 */
export interface MoveRecord {
  readonly tenantId: string;
  readonly jobId: string | null;
  readonly from: Place;
  readonly to: Place;
  readonly phase: 'copying' | 'flipped';
  readonly keepSource: boolean;
  readonly startedAt: Date;
  readonly flippedAt: Date | null;
  readonly stats: Readonly<Record<string, unknown>>;
}

type MoveRow = {
  tenant_id: string;
  job_id: string | null;
  from_isolation: IsolationLevel;
  from_server: string | null;
  to_isolation: IsolationLevel;
  to_server: string | null;
  phase: 'copying' | 'flipped';
  keep_source: boolean;
  started_at: Date | string;
  flipped_at: Date | string | null;
  stats: Record<string, unknown>;
};

function recordFromRow(row: MoveRow): MoveRecord {
  return {
    tenantId: row.tenant_id,
    jobId: row.job_id,
    from: { isolation: row.from_isolation, server: row.from_server },
    to: { isolation: row.to_isolation, server: row.to_server },
    phase: row.phase,
    keepSource: row.keep_source,
    startedAt: new Date(row.started_at),
    flippedAt: row.flipped_at === null ? null : new Date(row.flipped_at),
    stats: row.stats,
  };
}

export async function findMove(db: Queryable, tenantId: string): Promise<MoveRecord | undefined> {
  const { rows } = await db.query<MoveRow>('SELECT * FROM tenantry.tenant_moves WHERE tenant_id = $1', [
    tenantId,
  ]);
  return rows[0] && recordFromRow(rows[0]);
}

/** Moves whose old copy waits to be dropped and whose grace period is over. */
export async function movesToFinish(db: Queryable, graceSeconds: number): Promise<MoveRecord[]> {
  const { rows } = await db.query<MoveRow>(
    `SELECT * FROM tenantry.tenant_moves
      WHERE phase = 'flipped' AND NOT keep_source AND flipped_at <= now() - make_interval(secs => $1)
      ORDER BY flipped_at LIMIT 100`,
    [graceSeconds],
  );
  return rows.map(recordFromRow);
}

export async function recordMove(
  db: Queryable,
  move: { tenantId: string; jobId: string | null; from: Place; to: Place; keepSource: boolean },
): Promise<MoveRecord> {
  const { rows } = await db.query<MoveRow>(
    `INSERT INTO tenantry.tenant_moves (tenant_id, job_id, from_isolation, from_server, to_isolation, to_server, phase, keep_source)
     VALUES ($1, $2, $3, $4, $5, $6, 'copying', $7) RETURNING *`,
    [
      move.tenantId,
      move.jobId,
      move.from.isolation,
      move.from.server,
      move.to.isolation,
      move.to.server,
      move.keepSource,
    ],
  );
  return recordFromRow(rows[0]!);
}

export async function forgetMove(db: Queryable, tenantId: string): Promise<void> {
  await db.query('DELETE FROM tenantry.tenant_moves WHERE tenant_id = $1', [tenantId]);
}

/**
 * The flip: the tenant's row names its new place and the record its old copy, in one
 * control-plane transaction. Refused (0 rows) when the tenant is no longer where the move began.
 */
export async function flipPlacement(
  db: Queryable,
  record: MoveRecord,
  version: number,
  stats: object,
): Promise<boolean> {
  const { rowCount } = await db.query(
    `UPDATE tenantry.tenants SET isolation = $2, server = $3, schema_version = $6, updated_at = now()
      WHERE id = $1 AND isolation = $4 AND server IS NOT DISTINCT FROM $5`,
    [
      record.tenantId,
      record.to.isolation,
      record.to.server,
      record.from.isolation,
      record.from.server,
      version,
    ],
  );
  if (rowCount === 0) return false;
  await db.query(
    `UPDATE tenantry.tenant_moves SET phase = 'flipped', flipped_at = now(), stats = stats || $2::jsonb
      WHERE tenant_id = $1`,
    [record.tenantId, JSON.stringify(stats)],
  );
  return true;
}
