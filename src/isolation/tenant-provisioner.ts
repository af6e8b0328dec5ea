import type { TenantryConfig } from '../config/config-schema.js';
import type { Database } from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { isSqlState } from '../db/sqlstate.js';
import { tenantTablesDdl } from '../entities/entity-ddl.js';
import { diffTables, readTables, SchemaDriftError } from '../entities/entity-schema.js';
import type { IsolationLevel } from '../tenants/tenant.js';
import type { TenantDatabases } from './tenant-databases.js';
import { placementOf, type TenantPlacement } from './tenant-placement.js';

/**
 * Creates and removes what a tenant's rows need beyond the control plane: nothing for `row`
 * tenants (their tables are shared), a schema for `schema` tenants, a database for `database`
 * tenants. Every step is idempotent, so a provisioning interrupted anywhere can be run again.
 */
export class TenantProvisioner {
  readonly #db: Database;
  readonly #config: TenantryConfig;
  readonly #databases: TenantDatabases | undefined;

  constructor(db: Database, config: TenantryConfig, databases: TenantDatabases | undefined) {
    this.#db = db;
    this.#config = config;
    this.#databases = databases;
  }

  async provision(tenant: { id: string; isolation: IsolationLevel }): Promise<TenantPlacement> {
    const placement = placementOf(tenant);
    if (tenant.isolation === 'schema') await this.#provisionSchema(placement);
    if (tenant.isolation === 'database') await this.#provisionDatabase(placement);
    return placement;
  }

  async deprovision(tenant: { id: string; isolation: IsolationLevel }): Promise<void> {
    const placement = placementOf(tenant);
    if (tenant.isolation === 'schema') {
      await this.#db.owner.query(`DROP SCHEMA IF EXISTS ${quoteIdent(placement.schema)} CASCADE`);
    }
    if (tenant.isolation === 'database' && placement.database && this.#databases) {
      await this.#databases.release(placement.database);
      await this.#db.owner.query(`DROP DATABASE IF EXISTS ${quoteIdent(placement.database)} WITH (FORCE)`);
    }
  }

  async #provisionSchema(placement: TenantPlacement): Promise<void> {
    const ddl = tenantTablesDdl(this.#config.entities, {
      schema: placement.schema,
      runtimeRole: this.#config.database.runtimeRole,
    });
    // One transaction: the schema exists with all its tables and policies, or not at all.
    await this.#db.owner.transaction(async (tx) => {
      const existing = await readTables(tx, [placement.schema]);
      if (existing.get(placement.schema)!.size > 0)
        return this.#assertMatches(existing.get(placement.schema)!, placement);
      for (const statement of ddl) await tx.query(statement);
    });
  }

  async #provisionDatabase(placement: TenantPlacement): Promise<void> {
    if (!this.#databases || !placement.database) throw new Error('database isolation needs PostgreSQL');
    try {
      await this.#db.owner.query(`CREATE DATABASE ${quoteIdent(placement.database)}`);
    } catch (error) {
      if (!isSqlState(error, 'DUPLICATE_DATABASE')) throw error;
    }
    const ddl = tenantTablesDdl(this.#config.entities, {
      schema: placement.schema,
      runtimeRole: this.#config.database.runtimeRole,
    });
    await this.#databases.use(placement.database, 'owner', (owner) =>
      owner.transaction(async (tx) => {
        const existing = await readTables(tx, [placement.schema]);
        if (existing.get(placement.schema)!.size > 0) {
          return this.#assertMatches(existing.get(placement.schema)!, placement);
        }
        for (const statement of ddl) await tx.query(statement);
      }),
    );
  }

  /** Compares a database tenant's tables with the declared entities (drift check at start). */
  async checkDatabaseTenant(tenantId: string): Promise<string[]> {
    const placement = placementOf({ id: tenantId, isolation: 'database' });
    if (!this.#databases || !placement.database) return [];
    const tenantEntities = this.#config.entities.filter((entity) => entity.scope === 'tenant');
    return this.#databases.use(placement.database, 'owner', async (owner) => {
      const tables = await readTables(owner, [placement.schema]);
      return diffTables(tenantEntities, tables.get(placement.schema)!, `database ${placement.database}`);
    });
  }

  #assertMatches(tables: Parameters<typeof diffTables>[1], placement: TenantPlacement): void {
    const tenantEntities = this.#config.entities.filter((entity) => entity.scope === 'tenant');
    const where = placement.database ? `database ${placement.database}` : `schema ${placement.schema}`;
    const differences = diffTables(tenantEntities, tables, where);
    if (differences.length > 0) throw new SchemaDriftError(differences);
  }
}
