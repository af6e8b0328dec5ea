import type { Queryable } from './database.js';
import { quoteIdent, quoteLiteral } from './identifiers.js';
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
 * The runtime role has nothing in the control plane: tenant code runs as it (`request.db`,
 * `withTenant`), and must read no key, session or password hash and no other tenant's row there.
 * Tenantry's own reads of the control plane (resolving keys, sessions and tenants) go through the
 * owner's pool. Earlier versions granted the role reads here: those grants are taken back.
 */
export async function revokeControlPlaneAccess(db: Queryable, role: string): Promise<void> {
  const r = quoteIdent(role);
  await db.query(`REVOKE ALL ON ALL TABLES IN SCHEMA tenantry FROM ${r}`);
  await db.query(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA tenantry FROM ${r}`);
  await db.query(`REVOKE ALL ON SCHEMA tenantry FROM ${r}`);
}

/**
 * The login `DATABASE_URL` should use in production: it may log in, is a member of the runtime
 * role, and holds nothing else (tenant code that resets its role gets only this). Created when
 * missing, its password set when given. Needs CREATEROLE (or a superuser) on the owner's side.
 */
export async function ensureRuntimeLogin(
  db: Queryable,
  login: string,
  runtimeRole: string,
  password?: string,
): Promise<'created' | 'updated'> {
  const exists = (await db.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [login])).rowCount > 0;
  const name = quoteIdent(login);
  if (!exists) {
    await db.query(
      `CREATE ROLE ${name} LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION`,
    );
  }
  await db.query(`GRANT ${quoteIdent(runtimeRole)} TO ${name}`);
  if (password !== undefined) {
    // A password cannot be a bind parameter of ALTER ROLE: it is sent as an escaped literal.
    await db.query(`ALTER ROLE ${name} PASSWORD ${quoteLiteral(password)}`);
  }
  return exists ? 'updated' : 'created';
}
