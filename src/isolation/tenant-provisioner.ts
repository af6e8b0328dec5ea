import { randomBytes } from 'node:crypto';
import type { TenantryConfig } from '../config/config-schema.js';
import type { LiveConfig } from '../config/live-config.js';
import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { Queryable, Session } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
import { openPostgres } from '../db/postgres-driver.js';
import { isSqlState } from '../db/sqlstate.js';
import type { Entity, Field } from '../entities/entity.js';
import { tenantTablesDdl } from '../entities/entity-ddl.js';
import { diffTables, readTables, SchemaDriftError } from '../entities/entity-schema.js';
import type { EntityVersion } from '../entities/entity-versions.js';
import type { IsolationLevel } from '../tenants/tenant.js';
import type { DatabaseServers } from './database-servers.js';
import { databaseUrl, type TenantDatabases } from './tenant-databases.js';
import { databaseLocation, placementOf, type TenantPlacement } from './tenant-placement.js';

/** What provisioning needs to know of a tenant. */
export interface ProvisionedTenant {
  readonly id: string;
  readonly isolation: IsolationLevel;
  readonly server?: string | null;
}

/** The version a database tenant's own database records (its half of the ledger). */
export interface DatabaseLedgerEntry {
  readonly version: number;
  readonly digest: string;
}

const LEDGER_DDL = [
  'CREATE SCHEMA IF NOT EXISTS tenantry',
  `CREATE TABLE IF NOT EXISTS tenantry.entity_version (
     singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
     version integer NOT NULL,
     digest text NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT now()
   )`,
];

/** Reads the version a tenant database records; undefined before its tables were built. */
export async function readDatabaseLedger(
  db: Queryable,
  lock = false,
): Promise<DatabaseLedgerEntry | undefined> {
  const { rows: exists } = await db.query<{ ledger: string | null }>(
    "SELECT to_regclass('tenantry.entity_version')::text AS ledger",
  );
  if (!exists[0]?.ledger) return undefined;
  const { rows } = await db.query<{ version: number; digest: string }>(
    `SELECT version, digest FROM tenantry.entity_version${lock ? ' FOR UPDATE' : ''}`,
  );
  return rows[0] && { version: Number(rows[0].version), digest: rows[0].digest };
}

export async function writeDatabaseLedger(db: Queryable, entry: DatabaseLedgerEntry): Promise<void> {
  for (const statement of LEDGER_DDL) await db.query(statement);
  await db.query(
    `INSERT INTO tenantry.entity_version (singleton, version, digest) VALUES (true, $1, $2)
     ON CONFLICT (singleton) DO UPDATE SET version = excluded.version, digest = excluded.digest, updated_at = now()`,
    [entry.version, entry.digest],
  );
}

/**
 * Creates and removes what a tenant's rows need beyond the control plane: nothing for `row`
 * tenants (their tables are shared), a schema for `schema` tenants, a database for `database`
 * tenants, built at a given entity version. Every step is idempotent, so a provisioning or a
 * purge interrupted anywhere can be run again; callers hold the tenant's lock.
 */
export class TenantProvisioner {
  readonly #live: LiveConfig;

  /** Read at each use: a reload's values apply to the next call. */
  get #config(): TenantryConfig {
    return this.#live.current;
  }
  readonly #databases: TenantDatabases | undefined;
  readonly #servers: DatabaseServers;

  constructor(config: LiveConfig, databases: TenantDatabases | undefined, servers: DatabaseServers) {
    this.#live = config;
    this.#databases = databases;
    this.#servers = servers;
  }

  /** Builds the tenant's tables at `version` on the locked session, unless they are there already. */
  async provision(
    session: Session,
    tenant: ProvisionedTenant,
    version: EntityVersion,
  ): Promise<TenantPlacement> {
    const placement = placementOf(tenant);
    if (tenant.isolation === 'schema') await this.#provisionSchema(session, placement, version);
    if (tenant.isolation === 'database') await this.#provisionDatabase(session, placement, version);
    return placement;
  }

  /**
   * Drops the tenant's schema or database; for row tenants, deletes its rows (`beforeRowDelete`
   * runs first in that transaction: a move lets its own delete through the old copy's seal).
   */
  async deprovision(
    session: Session,
    tenant: ProvisionedTenant,
    rowEntities: readonly Entity[],
    beforeRowDelete?: (tx: Queryable) => Promise<void>,
  ): Promise<void> {
    const placement = placementOf(tenant);
    if (tenant.isolation === 'row') await this.#deleteRows(session, tenant.id, rowEntities, beforeRowDelete);
    if (tenant.isolation === 'schema') {
      await session.query(`DROP SCHEMA IF EXISTS ${quoteIdent(placement.schema)} CASCADE`);
    }
    if (tenant.isolation === 'database') {
      const location = databaseLocation(placement);
      await this.#servers.urls(location.server, session);
      await this.#databases?.release(location);
      await this.#onServer(
        session,
        location.server,
        `DROP DATABASE IF EXISTS ${quoteIdent(location.database)} WITH (FORCE)`,
      );
    }
  }

  async #provisionSchema(
    session: Session,
    placement: TenantPlacement,
    version: EntityVersion,
  ): Promise<void> {
    const ddl = tenantTablesDdl(version.entities, {
      schema: placement.schema,
      runtimeRole: this.#config.database.runtimeRole,
    });
    // One transaction: the schema exists with all its tables and policies, or not at all.
    await session.transaction(async (tx) => {
      const existing = (await readTables(tx, [placement.schema])).get(placement.schema)!;
      if (existing.size > 0) return assertMatches(version.entities, existing, `schema ${placement.schema}`);
      for (const statement of ddl) await tx.query(statement);
    });
  }

  async #provisionDatabase(
    session: Session,
    placement: TenantPlacement,
    version: EntityVersion,
  ): Promise<void> {
    if (!this.#databases || !placement.database) throw new Error('database isolation needs PostgreSQL');
    const location = databaseLocation(placement);
    // Known before any pool needs it: this session holds the tenant lock.
    await this.#servers.urls(location.server, session);
    const template = this.#config.database.templates
      ? await this.#template(session, location.server, version).catch(() => undefined)
      : undefined;
    let fromTemplate = false;
    const create = (from: string | undefined) =>
      this.#onServer(
        session,
        location.server,
        `CREATE DATABASE ${quoteIdent(location.database)}${from ? ` TEMPLATE ${quoteIdent(from)}` : ''}`,
      );
    try {
      try {
        await create(template);
        fromTemplate = template !== undefined;
      } catch (error) {
        // A template dropped or busy meanwhile (a migration replacing it): build without it.
        if (template === undefined || isSqlState(error, 'DUPLICATE_DATABASE')) throw error;
        await create(undefined);
      }
    } catch (error) {
      if (!isSqlState(error, 'DUPLICATE_DATABASE')) throw error;
    }
    await this.#restrictConnect(session, location.server, location.database);
    // A copy of the template is complete: it already holds the tables and the ledger.
    if (fromTemplate) return;
    await this.#databases.use(location, 'owner', (owner) =>
      owner.transaction((tx) => this.#buildTenantDatabase(tx, placement, version)),
    );
  }

  /**
   * A new database lets anyone on the server connect and make temporary tables (PUBLIC's
   * defaults): a tenant's database admits its owner and the runtime role only, and neither may
   * make temporary tables (they would outlive a tenant's transaction on a pooled connection).
   */
  async #restrictConnect(session: Session, server: string, database: string): Promise<void> {
    const name = quoteIdent(database);
    await this.#onServer(session, server, `REVOKE CONNECT, TEMPORARY ON DATABASE ${name} FROM PUBLIC`);
    // The runtime login connects: through the runtime role when it inherits it, by name when not.
    const { url, adminUrl } = await this.#servers.urls(server, session);
    const grantees = new Set([this.#config.database.runtimeRole]);
    const login = loginOf(url);
    if (login !== undefined && login !== loginOf(adminUrl)) grantees.add(login);
    for (const grantee of grantees) {
      await this.#onServer(session, server, `GRANT CONNECT ON DATABASE ${name} TO ${quoteIdent(grantee)}`);
    }
  }

  async #buildTenantDatabase(
    tx: Queryable,
    placement: TenantPlacement,
    version: EntityVersion,
  ): Promise<void> {
    const ledger = await readDatabaseLedger(tx, true);
    const existing = (await readTables(tx, [placement.schema])).get(placement.schema)!;
    if (existing.size > 0) {
      assertMatches(version.entities, existing, `database ${placement.database ?? ''}`);
    } else {
      const ddl = tenantTablesDdl(version.entities, {
        schema: placement.schema,
        runtimeRole: this.#config.database.runtimeRole,
      });
      for (const statement of ddl) await tx.query(statement);
    }
    if (ledger?.version !== version.version) {
      await writeDatabaseLedger(tx, { version: version.version, digest: version.digest });
    }
  }

  /**
   * A database holding the tables at `version` that tenant databases are copied from
   * (`CREATE DATABASE ... TEMPLATE`): one copy instead of a connection and dozens of DDL
   * statements per sign-up. Built once per server and version, then closed to connections,
   * which a template must be while it is copied.
   */
  async #template(session: Session, server: string, version: EntityVersion): Promise<string> {
    const existing = await this.#recordedTemplate(session, server, version.version);
    if (existing && (await this.#databaseExists(session, server, existing))) return existing;
    // A record whose database is gone (dropped by hand, or a removal interrupted) is rebuilt.
    if (existing) await session.query('DELETE FROM tenantry.database_templates WHERE name = $1', [existing]);
    await session.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, LockKey.DATABASE_TEMPLATES]);
    try {
      const raced = await this.#recordedTemplate(session, server, version.version);
      if (raced) return raced;
      const name = `tenantry_template_${randomBytes(8).toString('hex')}`;
      await this.#onServer(session, server, `CREATE DATABASE ${quoteIdent(name)}`);
      await this.#restrictConnect(session, server, name);
      try {
        const urls = await this.#servers.urls(server, session);
        const template = await openPostgres({
          url: databaseUrl(urls.adminUrl, name),
          maxConnections: 1,
          applicationName: 'tenantry-template',
        });
        try {
          await template.owner.transaction((tx) =>
            this.#buildTenantDatabase(tx, { tenantId: '', schema: 'app', database: name, server }, version),
          );
        } finally {
          await template.close();
        }
        await this.#onServer(session, server, `ALTER DATABASE ${quoteIdent(name)} ALLOW_CONNECTIONS false`);
        await session.query(
          'INSERT INTO tenantry.database_templates (server, version, name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
          [server, version.version, name],
        );
      } catch (error) {
        await this.#onServer(
          session,
          server,
          `DROP DATABASE IF EXISTS ${quoteIdent(name)} WITH (FORCE)`,
        ).catch(() => undefined);
        throw error;
      }
      return name;
    } finally {
      await session.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, LockKey.DATABASE_TEMPLATES]);
    }
  }

  async #recordedTemplate(session: Session, server: string, version: number): Promise<string | undefined> {
    const { rows } = await session.query<{ name: string }>(
      'SELECT name FROM tenantry.database_templates WHERE server = $1 AND version = $2',
      [server, version],
    );
    return rows[0]?.name;
  }

  async #databaseExists(session: Session, server: string, name: string): Promise<boolean> {
    const rows = await this.#servers.onServer(
      server,
      session,
      'SELECT 1 FROM pg_database WHERE datname = $1',
      [name],
    );
    return rows.length > 0;
  }

  /** Drops the templates of versions other than `keep` (after a migration). */
  async dropTemplates(session: Session, keep: number): Promise<void> {
    // Under the lock that builds them: never while a process is building or recording one.
    await session.query('SELECT pg_advisory_lock($1, $2)', [LOCK_NAMESPACE, LockKey.DATABASE_TEMPLATES]);
    try {
      const { rows } = await session.query<{ server: string; version: number; name: string }>(
        'SELECT server, version, name FROM tenantry.database_templates WHERE version <> $1',
        [keep],
      );
      for (const row of rows) {
        await this.#onServer(
          session,
          row.server,
          `DROP DATABASE IF EXISTS ${quoteIdent(row.name)} WITH (FORCE)`,
        );
        await session.query('DELETE FROM tenantry.database_templates WHERE name = $1', [row.name]);
      }
    } finally {
      await session.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_NAMESPACE, LockKey.DATABASE_TEMPLATES]);
    }
  }

  /** Runs a statement that must run outside a database (CREATE/DROP DATABASE) on a server. */
  async #onServer(session: Session, server: string, sql: string): Promise<void> {
    await this.#servers.onServer(server, session, sql);
  }

  /**
   * Deletes a row tenant's rows from the shared tables, in one transaction. Rows are deleted
   * children first (entities that reference others before those they reference); optional
   * references inside a cycle are cleared first, so `restrict` never blocks the purge.
   */
  async #deleteRows(
    session: Session,
    tenantId: string,
    entities: readonly Entity[],
    before: ((tx: Queryable) => Promise<void>) | undefined,
  ): Promise<void> {
    const tenantEntities = entities.filter((entity) => entity.scope === 'tenant');
    const existing = (await readTables(session, ['app'])).get('app')!;
    const present = tenantEntities.filter((entity) => existing.has(entity.name));
    const order = deletionOrder(present);
    await session.transaction(async (tx) => {
      // Forced row security applies to the owner too: scope the deletes to the tenant.
      await tx.query("SELECT set_config('tenantry.tenant_id', $1, true)", [tenantId]);
      await before?.(tx);
      for (const { entity, fields } of order.clearFirst) {
        const sets = fields.map((field) => `${quoteIdent(field.name)} = NULL`).join(', ');
        await tx.query(`UPDATE ${qualified('app', entity.name)} SET ${sets} WHERE tenant_id = $1`, [
          tenantId,
        ]);
      }
      for (const entity of order.entities) {
        await tx.query(`DELETE FROM ${qualified('app', entity.name)} WHERE tenant_id = $1`, [tenantId]);
      }
    });
  }
}

function assertMatches(
  entities: readonly Entity[],
  tables: Parameters<typeof diffTables>[1],
  where: string,
): void {
  const tenantEntities = entities.filter((entity) => entity.scope === 'tenant');
  const differences = diffTables(tenantEntities, tables, where);
  if (differences.length > 0) throw new SchemaDriftError(differences);
}

/**
 * An order to delete entities in so that no row is deleted while another still references it:
 * referencing entities first. A cycle can only be closed through optional references (a row
 * needing a row that needs it could never have been inserted), which are cleared first.
 */
export function deletionOrder(entities: readonly Entity[]): {
  entities: Entity[];
  clearFirst: { entity: Entity; fields: Field[] }[];
} {
  const first = topologicalOrder(entities, () => true);
  if (first.blocked.length === 0) return { entities: first.ordered, clearFirst: [] };
  const blocked = new Set(first.blocked.map((entity) => entity.name));
  const clearFirst = first.blocked
    .map((entity) => ({
      entity,
      fields: entity.fields.filter((field) => field.ref && !field.required && blocked.has(field.ref.entity)),
    }))
    .filter((entry) => entry.fields.length > 0);
  const cleared = new Set(clearFirst.flatMap((entry) => entry.fields));
  const second = topologicalOrder(entities, (field) => !cleared.has(field));
  return { entities: [...second.ordered, ...second.blocked], clearFirst };
}

/** Entities with every entity that references them (through `counts` fields) before them. */
function topologicalOrder(
  entities: readonly Entity[],
  counts: (field: Field) => boolean,
): { ordered: Entity[]; blocked: Entity[] } {
  const names = new Set(entities.map((entity) => entity.name));
  const referencedBy = new Map<string, Set<string>>(entities.map((entity) => [entity.name, new Set()]));
  for (const entity of entities) {
    for (const field of entity.fields) {
      const target = field.ref?.entity;
      if (target && names.has(target) && target !== entity.name && counts(field))
        referencedBy.get(target)!.add(entity.name);
    }
  }
  const ordered: Entity[] = [];
  const remaining = new Map(entities.map((entity) => [entity.name, entity]));
  for (;;) {
    const free = [...remaining.values()].filter((entity) =>
      [...referencedBy.get(entity.name)!].every((child) => !remaining.has(child)),
    );
    if (free.length === 0) break;
    for (const entity of free) {
      ordered.push(entity);
      remaining.delete(entity.name);
    }
  }
  return { ordered, blocked: [...remaining.values()] };
}

/** The role a connection string logs in as, when it names one. */
function loginOf(url: string): string | undefined {
  try {
    const user = decodeURIComponent(new URL(url).username);
    return user.length > 0 ? user : undefined;
  } catch {
    return undefined;
  }
}
