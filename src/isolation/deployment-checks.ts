import type { TenantryConfig } from '../config/config-schema.js';
import type { Database } from '../db/database.js';
import { tenantDatabaseName } from './tenant-placement.js';

/** One finding of `tenantry doctor`: what was checked, how it stands, and what to do about it. */
export interface DeploymentCheck {
  readonly name: string;
  readonly status: 'ok' | 'warn' | 'fail';
  readonly detail: string;
  readonly fix?: string;
}

const ok = (name: string, detail: string): DeploymentCheck => ({ name, status: 'ok', detail });
const warn = (name: string, detail: string, fix: string): DeploymentCheck => ({
  name,
  status: 'warn',
  detail,
  fix,
});
const fail = (name: string, detail: string, fix: string): DeploymentCheck => ({
  name,
  status: 'fail',
  detail,
  fix,
});

/** The lowest PostgreSQL major version Tenantry is tested on, and the lowest it supports. */
const TESTED_MAJOR = 15;
const SUPPORTED_MAJOR = 14;

/**
 * The runtime login (`DATABASE_URL`) is what tenant code runs on: whatever it may do, tenant code
 * may do after `RESET ROLE`. It must be a separate login that holds nothing but membership of the
 * runtime role: no superuser, no BYPASSRLS, not the owner, owning nothing.
 */
export async function checkRuntimeLogin(db: Database, config: TenantryConfig): Promise<DeploymentCheck> {
  const name = 'runtime login';
  if (db.driver === 'pglite') {
    return warn(
      name,
      'the embedded database has one superuser session: tenant code is kept to its tenant by the runtime role, but could reset it',
      'in production, use PostgreSQL with DATABASE_URL (a login that is only a member of the runtime role) and DATABASE_ADMIN_URL (the owner)',
    );
  }
  // Who DATABASE_URL is, asked through it; what that login may do, asked as the owner (the
  // login itself may not even look the control plane up).
  const { rows: who } = await db.runtime.query<{ login: string }>('SELECT current_user AS login');
  const { rows } = await db.owner.query<{
    login: string;
    superuser: boolean;
    bypass: boolean;
    owns: number;
    owner_member: boolean;
  }>(
    `SELECT r.rolname AS login, r.rolsuper AS superuser, r.rolbypassrls AS bypass,
            (SELECT count(*)::int FROM pg_class c WHERE c.relowner = r.oid) AS owns,
            EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = 'tenantry.tenants'::regclass
                     AND pg_has_role(r.oid, c.relowner, 'MEMBER')) AS owner_member
       FROM pg_roles r WHERE r.rolname = $1`,
    [who[0]?.login ?? ''],
  );
  const login = rows[0];
  const split = config.database.adminUrl !== undefined && config.database.adminUrl !== config.database.url;
  const fix = `CREATE ROLE tenantry_app LOGIN PASSWORD '...' IN ROLE ${config.database.runtimeRole}; then DATABASE_URL logs in as tenantry_app and DATABASE_ADMIN_URL as the owner (tenantry init-db --runtime-login tenantry_app creates it)`;
  if (!login) return fail(name, 'the runtime login could not be read', fix);
  if (login.superuser || login.bypass) {
    return fail(
      name,
      `DATABASE_URL logs in as ${login.login}, a superuser or BYPASSRLS role: tenant code could leave its tenant`,
      fix,
    );
  }
  if (!split || login.owner_member || login.owns > 0) {
    return fail(
      name,
      `DATABASE_URL logs in as ${login.login}, which owns the control plane or tables: tenant code could RESET ROLE out of its tenant`,
      fix,
    );
  }
  return ok(name, `DATABASE_URL logs in as ${login.login}, which owns nothing and is not the owner`);
}

/** The runtime role: no superuser, no BYPASSRLS, owns nothing, reads nothing of the control plane. */
export async function checkRuntimeRole(db: Database, config: TenantryConfig): Promise<DeploymentCheck> {
  const name = 'runtime role';
  const role = config.database.runtimeRole;
  const { rows } = await db.owner.query<{
    exists: boolean;
    unsafe: boolean;
    owns: number;
    control_plane: string[] | null;
  }>(
    `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1) AS exists,
            coalesce((SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = $1), false) AS unsafe,
            (SELECT count(*)::int FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = $1) AS owns,
            (SELECT array_agg(c.relname ORDER BY c.relname) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'tenantry' AND c.relkind = 'r' AND EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                AND has_table_privilege($1, c.oid, 'SELECT,INSERT,UPDATE,DELETE')) AS control_plane`,
    [role],
  );
  const state = rows[0];
  const fix = 'run tenantry init-db (it creates the role and takes back what it should not have)';
  if (!state?.exists) return fail(name, `the runtime role ${role} does not exist`, fix);
  if (state.unsafe)
    return fail(
      name,
      `${role} is a superuser or has BYPASSRLS: row-level security does not bind it`,
      `ALTER ROLE ${role} NOSUPERUSER NOBYPASSRLS`,
    );
  if (state.owns > 0)
    return fail(name, `${role} owns ${state.owns} table(s): an owner may turn row-level security off`, fix);
  if ((state.control_plane ?? []).length > 0) {
    return fail(
      name,
      `${role} may read or write control-plane tables: ${(state.control_plane ?? []).join(', ')}`,
      fix,
    );
  }
  return ok(name, `${role}: no superuser, no BYPASSRLS, owns nothing, no access to the control plane`);
}

/** Tenant databases on the main server that PUBLIC may still connect to or make temporary tables in. */
export async function checkTenantDatabases(db: Database): Promise<DeploymentCheck> {
  const name = 'tenant databases';
  if (db.driver === 'pglite') return ok(name, 'the embedded database has no tenant databases');
  const { rows: tenants } = await db.owner.query<{ id: string }>(
    "SELECT id FROM tenantry.tenants WHERE isolation = 'database' AND (server IS NULL OR server = 'main')",
  );
  const names = tenants.map((tenant) => tenantDatabaseName(tenant.id));
  const { rows } = await db.owner.query<{ datname: string }>(
    `SELECT datname FROM pg_database WHERE datname = ANY($1::text[])
        AND (has_database_privilege('public', oid, 'CONNECT') OR has_database_privilege('public', oid, 'TEMPORARY'))
      ORDER BY datname`,
    [names],
  );
  if (rows.length === 0)
    return ok(
      name,
      `${names.length} tenant database(s): PUBLIC may neither connect nor make temporary tables`,
    );
  const listed = rows.map((row) => row.datname);
  return fail(
    name,
    `PUBLIC may connect to or make temporary tables in ${listed.length} tenant database(s): ${listed.slice(0, 5).join(', ')}${listed.length > 5 ? ', ...' : ''}`,
    `REVOKE CONNECT, TEMPORARY ON DATABASE <name> FROM PUBLIC for each (databases created by this version are made so)`,
  );
}

/** The connections one process may open against what the server allows. */
export async function checkConnections(db: Database, config: TenantryConfig): Promise<DeploymentCheck> {
  const name = 'connections';
  if (db.driver === 'pglite') return ok(name, 'the embedded database needs no connections');
  const { rows } = await db.owner.query<{ max: number; reserved: number }>(
    `SELECT current_setting('max_connections')::int AS max,
            current_setting('superuser_reserved_connections')::int AS reserved`,
  );
  const available = (rows[0]?.max ?? 0) - (rows[0]?.reserved ?? 0);
  const { maxConnections, maxTenantConnections } = config.database;
  const owner =
    config.database.adminUrl && config.database.adminUrl !== config.database.url
      ? Math.max(2, Math.ceil(maxConnections / 4))
      : 0;
  const perProcess = maxConnections + owner + maxTenantConnections + 1;
  const detail = `one process opens up to ${perProcess} connections (runtime ${maxConnections}, owner ${owner}, tenant databases ${maxTenantConnections}, listener 1) of the server's ${available}`;
  if (perProcess > available) {
    return fail(
      name,
      detail,
      'lower database.maxConnections and database.maxTenantConnections, or raise max_connections',
    );
  }
  if (perProcess * 2 > available) {
    return warn(
      name,
      `${detail}: two processes would exceed it`,
      'size the pools for every process you run, or put PgBouncer in front',
    );
  }
  return ok(name, `${detail}: room for ${Math.floor(available / perProcess)} processes`);
}

export async function checkPostgresVersion(db: Database): Promise<DeploymentCheck> {
  const name = 'PostgreSQL version';
  const { rows } = await db.owner.query<{ version: number }>(
    "SELECT current_setting('server_version_num')::int AS version",
  );
  const major = Math.floor((rows[0]?.version ?? 0) / 10_000);
  if (major < SUPPORTED_MAJOR)
    return fail(name, `PostgreSQL ${major}`, `upgrade to PostgreSQL ${TESTED_MAJOR} or later`);
  if (major < TESTED_MAJOR)
    return warn(
      name,
      `PostgreSQL ${major}; tested on ${TESTED_MAJOR}`,
      `upgrade to PostgreSQL ${TESTED_MAJOR} or later`,
    );
  return ok(name, `PostgreSQL ${major}`);
}
