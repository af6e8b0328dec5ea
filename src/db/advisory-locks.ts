import type { ConnectionPool, Session } from './database.js';

/**
 * Advisory lock keys, (namespace, key) pairs for `pg_advisory_lock(int, int)`. The namespace keeps
 * Tenantry's locks apart from an application's own advisory locks on the same database.
 */
export const LOCK_NAMESPACE = 0x54_4e_54_59; // 'TNTY'

export const LockKey = {
  /** Held while control-plane migrations run: two processes starting at once apply them once. */
  CONTROL_PLANE_MIGRATIONS: 1,
  /** Held (per transaction) while slugs and hosts are checked and written, so the cross checks see each other. */
  TENANT_NAMESPACE: 2,
  /** Held while the runtime role, grants and base entity tables are checked and created at start. */
  ENTITY_STORAGE: 3,
  /** Held by `tenantry migrate` for its whole run: two migrations never run at once. */
  FLEET_MIGRATION: 4,
  /** Held (per transaction) while a new entity version is registered. */
  ENTITY_VERSIONS: 5,
  /** Held while a database template is built on a server. */
  DATABASE_TEMPLATES: 6,
  /** Held while the static tenants of the config file are synced: processes starting at once sync once. */
  STATIC_TENANTS: 7,
  /** Held (per transaction) while the capture schema of tenant moves is set up in a database. */
  MOVE_CAPTURE: 8,
  /** Scheduled jobs take keys from here up (one per job, per transaction, try-only). */
  SCHEDULER_BASE: 100,
} as const;

/**
 * Namespace of the write fence of a tenant being moved: every write of the tenant takes it shared
 * (in the capture trigger), the move takes it exclusive for its final catch-up (its write freeze).
 */
export const MOVE_FENCE_NAMESPACE = 0x54_4e_54_4d; // 'TNTM'

/** Namespace of per-tenant locks: provisioning, migration, repair and purge of one tenant. */
export const TENANT_LOCK_NAMESPACE = 0x54_4e_54_54; // 'TNTT'

/** The per-tenant lock key: 32 random bits of the tenant's UUID v7 (a collision only serialises). */
export function tenantLockKey(tenantId: string): number {
  return Number.parseInt(tenantId.replaceAll('-', '').slice(-8), 16) | 0;
}

/**
 * Runs `fn` on a dedicated connection while it holds a session-level advisory lock, so processes
 * starting at once do their set-up one after the other (CREATE SCHEMA IF NOT EXISTS and GRANT are
 * not safe to race).
 */
export async function withAdvisoryLock<T>(
  pool: ConnectionPool,
  key: number,
  fn: (session: Session) => Promise<T>,
): Promise<T> {
  return pool.withSession(async (session) => {
    await session.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, key]);
    try {
      return await fn(session);
    } finally {
      await session.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, key]);
    }
  });
}
