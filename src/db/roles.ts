import type { Queryable } from './database.js';
import { quoteIdent } from './identifiers.js';
import { isSqlState } from './sqlstate.js';

/**
 * Creates the runtime role when it does not exist: it may log in only if an operator says so,
 * owns nothing, bypasses no RLS. The connecting (owner) role becomes a member so tenant
 * transactions can switch to it with `set_config('role', ...)`. Idempotent; roles are
 * cluster-wide, so several Tenantry databases on one server share it.
 */
export async function ensureRuntimeRole(db: Queryable, role: string): Promise<void> {
  const exists = await db.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
  if (exists.rowCount === 0) {
    try {
      await db.query(
        `CREATE ROLE ${quoteIdent(role)} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOBYPASSRLS NOREPLICATION`,
      );
    } catch (error) {
      // Two processes creating it at once: the other one won.
      if (!isSqlState(error, 'DUPLICATE_OBJECT') && !isSqlState(error, 'UNIQUE_VIOLATION')) throw error;
    }
  }
  const { rows } = await db.query<{ superuser: boolean; member: boolean; bypass: boolean }>(
    `SELECT r.rolsuper AS superuser, pg_has_role(current_user, $1, 'MEMBER') AS member, t.rolbypassrls OR t.rolsuper AS bypass
       FROM pg_roles r, pg_roles t WHERE r.rolname = current_user AND t.rolname = $1`,
    [role],
  );
  const state = rows[0];
  if (state?.bypass) throw new Error(`the runtime role ${role} must not be a superuser or have BYPASSRLS`);
  if (state && !state.superuser && !state.member) await db.query(`GRANT ${quoteIdent(role)} TO CURRENT_USER`);
}

/**
 * What the runtime role may do in the control plane: resolve tenants and keys, note key use,
 * write audit entries. It never changes tenants.
 */
export async function grantControlPlaneAccess(db: Queryable, role: string): Promise<void> {
  const r = quoteIdent(role);
  await db.query(`GRANT USAGE ON SCHEMA tenantry TO ${r}`);
  await db.query(`GRANT SELECT ON tenantry.tenants, tenantry.tenant_hosts, tenantry.api_keys TO ${r}`);
  await db.query(`GRANT UPDATE (last_used_at) ON tenantry.api_keys TO ${r}`);
  await db.query(`GRANT INSERT ON tenantry.audit_log TO ${r}`);
  await db.query(`GRANT SELECT ON tenantry.entity_versions, tenantry.storage_versions TO ${r}`);
  // Runtime connections to tenant databases on other servers; the owner's URL stays private.
  await db.query(`GRANT SELECT (name, url) ON tenantry.database_servers TO ${r}`);
  // Sessions and permissions are checked on the request path; password hashes are not readable.
  await db.query(`GRANT SELECT (id, tenant_id, email, name, status, global_admin) ON tenantry.users TO ${r}`);
  await db.query(
    `GRANT SELECT ON tenantry.sessions, tenantry.roles, tenantry.groups, tenantry.user_roles,
       tenantry.group_members, tenantry.group_roles TO ${r}`,
  );
  await db.query(`GRANT UPDATE (last_used_at) ON tenantry.sessions TO ${r}`);
}
