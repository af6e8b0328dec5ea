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
} as const;
