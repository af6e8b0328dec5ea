import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import { type ActionContext, actorLabel } from './actor.js';

export type AuditOutcome = 'success' | 'failure' | 'denied';

export interface AuditEntryInput {
  readonly action: string;
  readonly outcome: AuditOutcome;
  readonly tenantId?: string | undefined;
  readonly target?: string | undefined;
  readonly details?: Readonly<Record<string, unknown>>;
}

export interface AuditEntry {
  readonly id: string;
  readonly at: Date;
  readonly actor: string;
  readonly action: string;
  readonly tenantId: string | null;
  readonly target: string | null;
  readonly outcome: AuditOutcome;
  readonly clientAddress: string | null;
  readonly details: Record<string, unknown>;
}

export interface AuditFilter {
  readonly tenantId?: string | undefined;
  readonly action?: string | undefined;
  readonly actor?: string | undefined;
  readonly since?: Date | undefined;
  readonly until?: Date | undefined;
  /** Entries older than this entry id (the `next` cursor of the previous page). */
  readonly before?: string | undefined;
  readonly limit?: number | undefined;
}

export interface AuditPage {
  readonly entries: readonly AuditEntry[];
  readonly next: string | null;
}

interface AuditRow {
  id: string | number;
  at: Date | string;
  actor: string;
  action: string;
  tenant_id: string | null;
  target: string | null;
  outcome: AuditOutcome;
  client_address: string | null;
  details: Record<string, unknown>;
  [column: string]: unknown;
}

export async function recordAudit(
  db: Queryable,
  context: ActionContext,
  entry: AuditEntryInput,
): Promise<void> {
  const details = context.requestId
    ? { requestId: context.requestId, ...entry.details }
    : (entry.details ?? {});
  await db.query(
    `INSERT INTO tenantry.audit_log (actor, action, tenant_id, target, outcome, client_address, details)
     VALUES ($1, $2, $3::uuid, $4, $5, $6, $7::jsonb)`,
    [
      actorLabel(context.actor),
      entry.action,
      entry.tenantId ?? null,
      entry.target ?? null,
      entry.outcome,
      context.clientAddress ?? null,
      JSON.stringify(details),
    ],
  );
}

const MAX_PAGE = 1000;

export async function listAudit(db: Queryable, filter: AuditFilter = {}): Promise<AuditPage> {
  const limit = filter.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
    throw new TenantryError('validation_failed', `limit must be an integer from 1 to ${MAX_PAGE}`, {
      field: 'limit',
    });
  }
  if (filter.before !== undefined && !/^\d{1,18}$/.test(filter.before)) {
    throw new TenantryError('validation_failed', 'before must be a cursor returned as next', {
      field: 'before',
    });
  }
  const { rows } = await db.query<AuditRow>(
    `SELECT id, at, actor, action, tenant_id, target, outcome, client_address, details
       FROM tenantry.audit_log
      WHERE ($1::uuid IS NULL OR tenant_id = $1::uuid)
        AND ($2::text IS NULL OR action = $2 OR action LIKE $2 || '.%')
        AND ($3::text IS NULL OR actor = $3)
        AND ($4::timestamptz IS NULL OR at >= $4)
        AND ($5::timestamptz IS NULL OR at < $5)
        AND ($6::bigint IS NULL OR id < $6::bigint)
      ORDER BY id DESC
      LIMIT $7`,
    [
      filter.tenantId ?? null,
      filter.action ?? null,
      filter.actor ?? null,
      filter.since ?? null,
      filter.until ?? null,
      filter.before ?? null,
      limit + 1,
    ],
  );
  const page = rows.slice(0, limit).map(
    (row): AuditEntry => ({
      id: String(row.id),
      at: new Date(row.at),
      actor: row.actor,
      action: row.action,
      tenantId: row.tenant_id,
      target: row.target,
      outcome: row.outcome,
      clientAddress: row.client_address,
      details: row.details,
    }),
  );
  return { entries: page, next: rows.length > limit ? (page.at(-1)?.id ?? null) : null };
}
