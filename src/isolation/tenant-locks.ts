import { TENANT_LOCK_NAMESPACE, tenantLockKey } from '../db/advisory-locks.js';
import type { Database, Session } from '../db/database.js';

/** The tenant is being worked on by someone else (another process, or this one). */
export class TenantBusyError extends Error {
  constructor(readonly tenantId: string) {
    super(`tenant ${tenantId} is being provisioned, migrated or purged right now; try again shortly`);
    this.name = 'TenantBusyError';
  }
}

/**
 * One worker per tenant at a time, across processes: provisioning, migration, repair and purge
 * of a tenant each hold its lock for their whole length. On PostgreSQL it is a session-level
 * advisory lock on a dedicated owner connection, so a crashed worker releases it with its
 * connection and `repair` can tell "crashed" from "still running". The work runs on that same
 * session, so a worker needs one connection of the main database. PGlite is one process: an
 * in-process set is the lock there.
 */
export class TenantLocks {
  readonly #db: Database;
  readonly #local = new Map<string, Promise<unknown>>();

  constructor(db: Database) {
    this.#db = db;
  }

  /** Runs `fn` holding the tenant's lock; waits for it, or throws TenantBusyError when `wait` is false. */
  async with<T>(
    tenantId: string,
    fn: (session: Session) => Promise<T>,
    options: { wait?: boolean } = {},
  ): Promise<T> {
    const wait = options.wait ?? true;
    for (let running = this.#local.get(tenantId); running; running = this.#local.get(tenantId)) {
      if (!wait) throw new TenantBusyError(tenantId);
      await running.catch(() => undefined);
    }
    const work = this.#db.shared
      ? this.#withAdvisoryLock(tenantId, fn, wait)
      : this.#db.owner.withSession(fn);
    this.#local.set(tenantId, work);
    try {
      return await work;
    } finally {
      if (this.#local.get(tenantId) === work) this.#local.delete(tenantId);
    }
  }

  /** Whether a worker holds the tenant's lock right now (in any process). */
  async isBusy(tenantId: string): Promise<boolean> {
    if (this.#local.has(tenantId)) return true;
    if (!this.#db.shared) return false;
    const { rows } = await this.#db.owner.query<{ busy: boolean }>(
      `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid::int = $1
         AND objid::int = $2 AND objsubid = 2 AND granted) AS busy`,
      [TENANT_LOCK_NAMESPACE, tenantLockKey(tenantId)],
    );
    return rows[0]?.busy === true;
  }

  #withAdvisoryLock<T>(tenantId: string, fn: (session: Session) => Promise<T>, wait: boolean): Promise<T> {
    const key = [TENANT_LOCK_NAMESPACE, tenantLockKey(tenantId)];
    return this.#db.owner.withSession(async (session) => {
      if (wait) await session.query('SELECT pg_advisory_lock($1, $2)', key);
      else {
        const { rows } = await session.query<{ locked: boolean }>(
          'SELECT pg_try_advisory_lock($1, $2) AS locked',
          key,
        );
        if (!rows[0]?.locked) throw new TenantBusyError(tenantId);
      }
      try {
        return await fn(session);
      } finally {
        await session.query('SELECT pg_advisory_unlock($1, $2)', key);
      }
    });
  }
}
