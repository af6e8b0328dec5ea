import { v7 as uuidv7 } from 'uuid';
import { tenantLockKey } from '../db/advisory-locks.js';
import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import {
  type AuditIntent,
  auditedChange,
  type ChangeRecord,
  type Transactional,
} from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { missingFrom, type PermissionSet } from './permissions.js';

/** Someone acting inside one tenant: what it holds bounds what it may give. */
export interface Principal {
  readonly tenantId: string;
  readonly permissions: PermissionSet;
  /** The acting user, when a user acts (not an operator or a key). */
  readonly userId?: string | undefined;
  /** When a key acts: the user who made it (its permissions never exceed that user's). */
  readonly keyCreatedBy?: string | undefined;
  /** An operator (admin token, global admin, CLI, library) acting in the tenant: holds every permission. */
  readonly operator?: boolean | undefined;
  readonly context: ActionContext;
}

/** Namespace of the per-tenant access lock: access changes of one tenant run one at a time. */
const ACCESS_LOCK_NAMESPACE = 0x54_4e_54_41; // 'TNTA'

/**
 * Serialises access changes of a tenant (in the caller's transaction), so two concurrent
 * removals cannot each see "another admin is left" and leave none.
 */
export async function lockTenantAccess(tx: Queryable, tenantId: string): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [ACCESS_LOCK_NAMESPACE, tenantLockKey(tenantId)]);
}

/** The built-in roles and the root group of a tenant, created the first time they are needed. */
export async function bootstrapTenantAccess(tx: Queryable, tenantId: string): Promise<void> {
  const { rows } = await tx.query<{ count: number }>(
    'SELECT count(*)::int AS count FROM tenantry.roles WHERE tenant_id = $1 AND built_in IS NOT NULL',
    [tenantId],
  );
  if (Number(rows[0]?.count ?? 0) < 3) {
    await tx.query(
      `INSERT INTO tenantry.roles (id, tenant_id, name, built_in, is_default)
       VALUES ($2, $1, 'tenant-admin', 'tenant-admin', false), ($3, $1, 'member', 'member', true),
              ($4, $1, 'read-only', 'read-only', false)
       ON CONFLICT DO NOTHING`,
      [tenantId, uuidv7(), uuidv7(), uuidv7()],
    );
  }
  await tx.query(
    `INSERT INTO tenantry.groups (id, tenant_id, name, root) SELECT $2, $1, 'everyone', true
      WHERE NOT EXISTS (SELECT 1 FROM tenantry.groups WHERE tenant_id = $1 AND root)
     ON CONFLICT DO NOTHING`,
    [tenantId, uuidv7()],
  );
}

/** Refuses unless the principal holds `permission` (the management permission of a resource). */
export function requirePermission(principal: Principal, permission: string): void {
  if (!principal.permissions.has(permission)) {
    throw new TenantryError('forbidden', `this needs the permission ${permission}`);
  }
}

/**
 * The delegation rule: a principal gives only what it holds. Whatever it grants (a role's
 * permissions, a role or group assignment, a key's scope) must be a subset of its own.
 */
export function assertCanGrant(principal: Principal, granted: Iterable<string>, what: string): void {
  const missing = missingFrom(principal.permissions, granted);
  if (missing.length > 0) {
    throw new TenantryError(
      'forbidden',
      `${what} would grant permissions you do not hold: ${missing.sort().join(', ')}`,
    );
  }
}

/** Active users of a tenant who hold the built-in tenant-admin role, directly or through a group. */
export async function countTenantAdmins(tx: Queryable, tenantId: string): Promise<number> {
  const { rows } = await tx.query<{ count: number }>(
    `SELECT count(*)::int AS count FROM tenantry.users u
      WHERE u.tenant_id = $1 AND u.status = 'active'
        AND (EXISTS (SELECT 1 FROM tenantry.user_roles ur JOIN tenantry.roles r ON r.id = ur.role_id
                      WHERE ur.user_id = u.id AND r.built_in = 'tenant-admin')
          OR EXISTS (SELECT 1 FROM tenantry.group_members gm
                       JOIN tenantry.group_roles gr ON gr.group_id = gm.group_id
                       JOIN tenantry.roles r ON r.id = gr.role_id
                      WHERE gm.user_id = u.id AND r.built_in = 'tenant-admin'))`,
    [tenantId],
  );
  return Number(rows[0]?.count ?? 0);
}

/**
 * Runs an access change and refuses it (rolling back, since it throws inside the transaction)
 * when it would leave a tenant that had an administrator without one.
 */
export async function keepingAnAdmin<T>(
  tx: Queryable,
  tenantId: string,
  change: () => Promise<T>,
): Promise<T> {
  const before = await countTenantAdmins(tx, tenantId);
  const result = await change();
  if (before > 0 && (await countTenantAdmins(tx, tenantId)) === 0) {
    throw new TenantryError(
      'conflict',
      'this would remove the last tenant admin: give the role to someone else first',
    );
  }
  return result;
}

/**
 * One access change of a tenant: an audited change (see `auditedChange`) under the tenant's access
 * lock, with the built-in roles in place, announced to every process when it commits.
 */
export function accessChange<T>(
  db: Transactional & Queryable,
  bus: ChangeBus,
  context: ActionContext,
  tenantId: string,
  audit: AuditIntent,
  fn: (tx: Queryable, record: ChangeRecord) => Promise<T>,
): Promise<T> {
  return auditedChange({ bus }, db, context, { tenantId, ...audit }, async (tx, record) => {
    await lockTenantAccess(tx, tenantId);
    await bootstrapTenantAccess(tx, tenantId);
    const value = await fn(tx, record);
    record.announce({ kind: 'access', tenantId });
    return value;
  });
}
