import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from './actor.js';
import { recordAudit } from './audit-log.js';
import type { Change, ChangeBus } from './change-bus.js';

/** Where a change runs: a pool or a held session (a lock holder must not wait for a second connection). */
export interface Transactional {
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
}

/** The audit entry a change writes: `success` with the change, `failure` (with the error's code) without it. */
export interface AuditIntent {
  readonly action: string;
  readonly target?: string | undefined;
  readonly tenantId?: string | undefined;
  readonly details?: Readonly<Record<string, unknown>>;
}

/** What the work of a change may add while it runs, before its transaction commits. */
export interface ChangeRecord {
  /** Cached state other processes (and this one, after the commit) must drop. */
  announce(change: Change): void;
  /** More details for the success entry (known only once the work ran: counts, ids). */
  detail(details: Readonly<Record<string, unknown>>): void;
  /**
   * What the success entry says, where the work decides it: the id of what it made, or a more
   * precise action (`user.deactivate` for an update that deactivates). Details are merged.
   */
  describe(audit: Partial<AuditIntent>): void;
}

export interface AuditedChangeDeps {
  readonly bus: ChangeBus;
  /** Turns a driver error into the refusal the caller sees (a unique violation into `conflict`). */
  readonly translate?: (error: unknown) => unknown;
}

/**
 * The one way to write: the work, its announcements and its audit entry commit together in one
 * transaction, and the announcements are applied in this process right after the commit (so the
 * writer never serves stale data). A failure rolls everything back, and is audited on its own
 * with the error's code (best effort: the audit of a failure never hides the failure).
 *
 * @example
 * await auditedChange({ bus }, db.owner, context, { action: 'tenant.update', tenantId }, async (tx, record) => {
 *   await tx.query('UPDATE tenantry.tenants SET name = $2 WHERE id = $1', [tenantId, name]);
 *   record.announce({ kind: 'tenant', tenantId });
 * });
 */
export async function auditedChange<T>(
  deps: AuditedChangeDeps,
  db: Transactional & Queryable,
  context: ActionContext,
  audit: AuditIntent,
  work: (tx: Queryable, record: ChangeRecord) => Promise<T>,
): Promise<T> {
  const changes: Change[] = [];
  let result: T;
  try {
    result = await db.transaction(async (tx) => {
      changes.length = 0;
      let entry: AuditIntent = audit;
      const details: Record<string, unknown> = { ...audit.details };
      const value = await work(tx, {
        announce: (change) => changes.push(change),
        detail: (more) => Object.assign(details, more),
        describe: ({ details: more, ...rest }) => {
          entry = { ...entry, ...rest };
          if (more) Object.assign(details, more);
        },
      });
      for (const change of changes) await deps.bus.announce(tx, change);
      await recordAudit(tx, context, {
        action: entry.action,
        target: entry.target,
        tenantId: entry.tenantId,
        outcome: 'success',
        ...(Object.keys(details).length > 0 ? { details } : {}),
      });
      return value;
    });
  } catch (error) {
    const refused = deps.translate ? deps.translate(error) : error;
    await recordAudit(db, context, {
      action: audit.action,
      target: audit.target,
      tenantId: audit.tenantId,
      outcome: 'failure',
      details: { ...audit.details, code: refused instanceof TenantryError ? refused.code : 'internal' },
    }).catch(() => undefined);
    throw refused;
  }
  for (const change of changes) deps.bus.applied(change);
  return result;
}
