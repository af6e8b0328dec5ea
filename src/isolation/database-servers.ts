import type { TenantryConfig } from '../config/config-schema.js';
import type { LiveConfig } from '../config/live-config.js';
import type { Database, Queryable, Row } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { newClient } from '../db/postgres-driver.js';
import { ensureRuntimeRole } from '../db/roles.js';
import { isSqlState } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { auditedChange } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { tenantDatabaseName } from './tenant-placement.js';

/** The control plane's own server: tenant databases go there unless other servers are added. */
export const MAIN_SERVER = 'main';

const SERVER_NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** How to reach a server: the runtime role's and the owner's connection strings. */
export interface ServerUrls {
  readonly url: string;
  readonly adminUrl: string;
}

export interface ServerInfo {
  readonly name: string;
  /** The runtime connection string without its password. */
  readonly url: string;
  readonly tenants: number;
  readonly createdAt: string;
}

/** A connection string with its password masked, for listings and messages. */
export function maskUrl(raw: string): string {
  try {
    const url = new URL(raw);
    if (url.password) url.password = '***';
    return url.toString();
  } catch {
    return '(invalid URL)';
  }
}

async function checkReachable(url: string, runtimeRole: string, owner: boolean): Promise<void> {
  const client = newClient({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    if (owner) {
      const { rows } = await client.query<{ allowed: boolean }>(
        'SELECT rolsuper OR rolcreatedb AS allowed FROM pg_roles WHERE rolname = current_user',
      );
      if (!rows[0]?.allowed) throw new Error('its owner role may not create databases (CREATEDB)');
      await ensureRuntimeRole(client, runtimeRole);
    } else {
      // Tenant transactions switch to the runtime role: the runtime login must be allowed to.
      try {
        await client.query("SELECT set_config('role', $1, false)", [runtimeRole]);
      } catch {
        throw new Error(
          `its runtime login cannot act as the runtime role ${runtimeRole} (grant it the role)`,
        );
      }
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * The PostgreSQL servers that hold database tenants, and the choice of one for a new tenant.
 * `main` is the control plane's own server; others are added with their connection strings,
 * which are checked (they must answer, and may create databases) before they are recorded.
 */
export class DatabaseServers {
  readonly #db: Database;
  readonly #bus: ChangeBus;
  readonly #live: LiveConfig;

  /** Read at each use: a reload's values apply to the next call. */
  get #config(): TenantryConfig {
    return this.#live.current;
  }
  readonly #cache = new Map<string, ServerUrls>();

  constructor(db: Database, bus: ChangeBus, config: LiveConfig) {
    this.#db = db;
    this.#bus = bus;
    this.#live = config;
  }

  /**
   * Connection strings of a server; throws `not_found` for an unknown name. A caller holding a
   * tenant lock passes its session (`via`): it must not wait for a second pool connection.
   */
  async urls(name: string, via?: Queryable): Promise<ServerUrls> {
    const cached = this.#cache.get(name);
    if (cached) return cached;
    let urls: ServerUrls;
    const { url, adminUrl } = this.#config.database;
    if (name === MAIN_SERVER) {
      if (!url)
        throw new TenantryError('validation_failed', 'database tenants need PostgreSQL (DATABASE_URL)');
      urls = { url, adminUrl: adminUrl ?? url };
    } else {
      const row = await this.#row(name, via);
      urls = { url: row.url, adminUrl: row.admin_url ?? row.url };
    }
    this.#cache.set(name, urls);
    return urls;
  }

  async #row(name: string, via: Queryable | undefined): Promise<{ url: string; admin_url: string | null }> {
    // The owner URL is readable by the owner only; a runtime-only process reaches tenant
    // databases as the runtime role and never provisions.
    const pool = via ?? this.#db.owner;
    const { rows } = await pool.query<{ url: string; admin_url: string | null }>(
      'SELECT url, admin_url FROM tenantry.database_servers WHERE name = $1 AND url IS NOT NULL',
      [name],
    );
    if (!rows[0])
      throw new TenantryError('not_found', `no database server "${clip(name)}"`, { field: 'server' });
    return rows[0];
  }

  async list(): Promise<ServerInfo[]> {
    const { rows } = await this.#db.owner.query<{
      name: string;
      url: string | null;
      tenants: number;
      created_at: Date | string;
    }>(
      `SELECT s.name, s.url, s.created_at, count(t.id)::int AS tenants
         FROM tenantry.database_servers s
         LEFT JOIN tenantry.tenants t ON t.server = s.name
        GROUP BY s.name ORDER BY s.name`,
    );
    return rows.map((row) => {
      // The control plane's own server has no URL on the embedded database: it is in process.
      const url = row.url ?? this.#config.database.url;
      return {
        name: row.name,
        url: url ? maskUrl(url) : 'embedded',
        tenants: Number(row.tenants),
        createdAt: new Date(row.created_at).toISOString(),
      };
    });
  }

  /**
   * The server for a new database tenant: the one asked for, or the one with the fewest tenants
   * (but `exclude`, where a tenant moving to another server is now).
   */
  async choose(tx: Queryable, requested: string | undefined, exclude: string | null = null): Promise<string> {
    if (requested !== undefined) {
      const { rows } = await tx.query('SELECT 1 FROM tenantry.database_servers WHERE name = $1', [requested]);
      if (rows.length === 0)
        throw new TenantryError('validation_failed', `no database server "${clip(requested)}"`, {
          field: 'server',
        });
      return requested;
    }
    const { rows } = await tx.query<{ name: string }>(
      `SELECT s.name FROM tenantry.database_servers s
         LEFT JOIN tenantry.tenants t ON t.server = s.name AND t.status <> 'deleted'
        WHERE s.name IS DISTINCT FROM $1
        GROUP BY s.name ORDER BY count(t.id), s.name = 'main' DESC, s.name LIMIT 1`,
      [exclude],
    );
    return rows[0]?.name ?? MAIN_SERVER;
  }

  async add(
    input: { name: string; url: string; adminUrl?: string | undefined },
    context: ActionContext,
  ): Promise<ServerInfo> {
    if (this.#db.driver !== 'postgres')
      throw new TenantryError('validation_failed', 'database servers need PostgreSQL (DATABASE_URL)');
    if (typeof input.name !== 'string' || !SERVER_NAME.test(input.name)) {
      throw new TenantryError(
        'validation_failed',
        'a server name is 1 to 40 characters of a-z, 0-9 and -, starting with a letter',
        { field: 'name' },
      );
    }
    await this.#checkUrls(input.name, input.url, input.adminUrl);
    const translate = (error: unknown) =>
      isSqlState(error, 'UNIQUE_VIOLATION')
        ? new TenantryError('conflict', `server "${input.name}" already exists`, { field: 'name' })
        : error;
    await auditedChange(
      { bus: this.#bus, translate },
      this.#db.owner,
      context,
      { action: 'server.add', target: input.name },
      async (tx) => {
        await tx.query('INSERT INTO tenantry.database_servers (name, url, admin_url) VALUES ($1, $2, $3)', [
          input.name,
          input.url,
          input.adminUrl ?? null,
        ]);
      },
    );
    const added = (await this.list()).find((server) => server.name === input.name);
    if (!added) throw new TenantryError('conflict', 'the server was removed while it was added');
    return added;
  }

  /** Both URLs must be postgres:// strings of a server that answers, may create databases and grant the runtime role. */
  async #checkUrls(name: string, url: string, adminUrl: string | undefined): Promise<void> {
    for (const [field, value] of [
      ['url', url],
      ['adminUrl', adminUrl],
    ] as const) {
      if (value === undefined && field === 'adminUrl') continue;
      if (typeof value !== 'string' || !/^postgres(ql)?:\/\//.test(value) || !URL.canParse(value)) {
        throw new TenantryError('validation_failed', `${field} must be a postgres:// connection string`, {
          field,
        });
      }
    }
    const role = this.#config.database.runtimeRole;
    try {
      await checkReachable(adminUrl ?? url, role, true);
      if (adminUrl && adminUrl !== url) await checkReachable(url, role, false);
    } catch (error) {
      throw new TenantryError(
        'validation_failed',
        `server "${name}" at ${maskUrl(url)} cannot be used: ${error instanceof Error ? error.message : String(error)}`,
        { field: 'url' },
      );
    }
  }

  /**
   * Changes how a server is reached (it moved, its password changed). The new URLs are checked
   * like a new server's, and must reach every database the server holds for Tenantry (its
   * tenants' and templates'): a URL of another server is refused before anything changes. Every
   * process drops its cached URLs and its pools to that server when the change commits.
   */
  async update(
    input: { name: string; url: string; adminUrl?: string | undefined },
    context: ActionContext,
  ): Promise<ServerInfo> {
    if (input.name === MAIN_SERVER) {
      throw new TenantryError(
        'validation_failed',
        'the main server is reached by DATABASE_URL and DATABASE_ADMIN_URL: change those',
        { field: 'name' },
      );
    }
    await this.#row(input.name, undefined);
    await this.#checkUrls(input.name, input.url, input.adminUrl);
    const { rows } = await this.#db.owner.query<{ id: string | null; template: string | null }>(
      `SELECT id, NULL AS template FROM tenantry.tenants
        WHERE server = $1 AND isolation = 'database' AND status NOT IN ('provisioning', 'restoring')
       UNION ALL SELECT NULL, name FROM tenantry.database_templates WHERE server = $1`,
      [input.name],
    );
    const expected = rows.map((row) => row.template ?? tenantDatabaseName(row.id!));
    if (expected.length > 0) {
      const client = newClient({
        connectionString: input.adminUrl ?? input.url,
        connectionTimeoutMillis: 5_000,
      });
      let found: string[];
      try {
        await client.connect();
        found = (
          await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname = ANY($1)', [
            expected,
          ])
        ).rows.map((row) => row.datname);
      } finally {
        await client.end().catch(() => undefined);
      }
      const missing = expected.filter((name) => !found.includes(name));
      if (missing.length > 0) {
        throw new TenantryError(
          'validation_failed',
          `the new URL does not reach ${missing.length} of the ${expected.length} databases server "${input.name}" holds (${missing.slice(0, 3).join(', ')}): is it another server?`,
          { field: 'url' },
        );
      }
    }
    await auditedChange(
      { bus: this.#bus },
      this.#db.owner,
      context,
      { action: 'server.update', target: input.name },
      async (tx, record) => {
        await tx.query('UPDATE tenantry.database_servers SET url = $2, admin_url = $3 WHERE name = $1', [
          input.name,
          input.url,
          input.adminUrl ?? null,
        ]);
        record.announce({ kind: 'server', name: input.name });
      },
    );
    const updated = (await this.list()).find((server) => server.name === input.name);
    if (!updated) throw new TenantryError('conflict', 'the server was removed while it was updated');
    return updated;
  }

  /** Forgets a server's cached URLs (they changed), or every server's: the next use reads them again. */
  forget(name?: string): void {
    if (name === undefined) this.#cache.clear();
    else this.#cache.delete(name);
  }

  /**
   * Runs one statement as the owner of a server, outside any database's transaction (CREATE and
   * DROP DATABASE, pg_database). On `main` it runs on `via`, the caller's session: a caller
   * holding a lock must not wait for a second pool connection. Elsewhere, a short connection.
   */
  async onServer<R extends Row = Row>(
    server: string,
    via: Queryable,
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<R[]> {
    if (server === MAIN_SERVER) return (await via.query<R>(sql, params)).rows;
    const client = newClient({
      connectionString: (await this.urls(server, via)).adminUrl,
      connectionTimeoutMillis: 10_000,
    });
    await client.connect();
    try {
      return (await client.query<R>(sql, [...params])).rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Refused while any tenant (even a deleted one not yet purged) has its database there. */
  async remove(name: string, context: ActionContext): Promise<void> {
    if (name === MAIN_SERVER) throw new TenantryError('conflict', 'the main server cannot be removed');
    const audit = { action: 'server.remove', target: name };
    await auditedChange({ bus: this.#bus }, this.#db.owner, context, audit, async (tx) => {
      const { rows } = await tx.query<{ name: string }>(
        'SELECT name FROM tenantry.database_servers WHERE name = $1 FOR UPDATE',
        [name],
      );
      if (rows.length === 0) throw new TenantryError('not_found', `no database server "${clip(name)}"`);
      const { rows: tenants } = await tx.query<{ count: number }>(
        'SELECT count(*)::int AS count FROM tenantry.tenants WHERE server = $1',
        [name],
      );
      const count = Number(tenants[0]?.count ?? 0);
      if (count > 0) {
        throw new TenantryError(
          'conflict',
          `server "${name}" still holds ${count} tenant database(s); move or purge them first`,
        );
      }
      // Its templates go first, while the server's record still says how to reach it.
      const { rows: templates } = await tx.query<{ name: string }>(
        'DELETE FROM tenantry.database_templates WHERE server = $1 RETURNING name',
        [name],
      );
      for (const template of templates) {
        await this.onServer(name, tx, `DROP DATABASE IF EXISTS ${quoteIdent(template.name)} WITH (FORCE)`);
      }
      await tx.query('DELETE FROM tenantry.database_servers WHERE name = $1', [name]);
    });
    this.#cache.delete(name);
  }
}

function clip(value: string): string {
  const text = String(value);
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}
