import type { TenantryConfig } from '../config/config-schema.js';
import type { LiveConfig } from '../config/live-config.js';
import type {
  ConnectionPool,
  Database,
  Queryable,
  QueryResult,
  Row,
  TenantSettings,
  Transaction,
  TransactionOptions,
} from '../db/database.js';
import { quoteIdent } from '../db/identifiers.js';
import { isSqlState } from '../db/sqlstate.js';
import type { EntityDb } from '../entities/entity-db.js';
import { TenantryError } from '../errors.js';
import type { Tenant } from '../tenants/tenant.js';
import type { TenantDatabases } from './tenant-databases.js';
import { databaseLocation, placementOf, SHARED_SCHEMA, type TenantPlacement } from './tenant-placement.js';

/**
 * A database handle bound to one tenant. Every statement runs inside a tenant transaction:
 * the runtime role, `tenantry.tenant_id`, the tenant's search_path and statement_timeout, all
 * transaction-local. There is no way to run an unscoped statement through it.
 *
 * @example
 * const { rows } = await request.db.query('SELECT id, name FROM projects WHERE status = $1', ['active']);
 */
export interface TenantDb extends EntityDb {
  readonly tenantId: string;
  readonly placement: TenantPlacement;
  /** One statement in its own tenant transaction (one round trip on PostgreSQL). */
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /**
   * Several statements in one tenant transaction. A write that meets the sealed old copy of a
   * tenant that has just moved (an online move) is rolled back and answered 503 `unavailable`.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Reads shared entities (schema `shared`, read-only for tenants). */
  queryShared<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/**
 * What every transaction of `tenant` sets (role, tenant id, search_path, statement_timeout), and
 * what its reads of shared entities set.
 */
export function tenantSettings(
  tenant: Pick<Tenant, 'id' | 'isolation' | 'effective'>,
  config: Pick<TenantryConfig, 'database' | 'tenancy'>,
): { readonly settings: TenantSettings; readonly sharedSettings: TenantSettings } {
  const placement = placementOf(tenant);
  const statementTimeoutMs = tenant.effective.limits.statementTimeoutMs ?? config.tenancy.statementTimeoutMs;
  const role = config.database.runtimeRole;
  // pg_temp named last: unnamed, PostgreSQL searches the session's temporary tables first, and a
  // temporary table lives as long as the pooled connection, on to the next tenant's requests.
  const searchPath = placement.database
    ? `${quoteIdent(placement.schema)}, pg_temp`
    : `${quoteIdent(placement.schema)}, ${quoteIdent(SHARED_SCHEMA)}, pg_temp`;
  const settings: TenantSettings = { role, tenantId: tenant.id, searchPath, statementTimeoutMs };
  const sharedSettings: TenantSettings = {
    ...settings,
    searchPath: `${quoteIdent(SHARED_SCHEMA)}, pg_temp`,
  };
  return { settings, sharedSettings };
}

/**
 * What a statement gets from a copy a move dropped (its schema, its tables or its database gone,
 * its connections ended): answered 503 when the control plane names another place.
 */
const DROPPED_COPY = [
  'UNDEFINED_TABLE',
  'INVALID_SCHEMA_NAME',
  'INVALID_CATALOG_NAME',
  'ADMIN_SHUTDOWN',
] as const;

type Reload = (tenantId: string) => Promise<Tenant | undefined>;

/** A pool, or a way to lease one for the length of a call (database tenants). */
type PoolSource = ConnectionPool | (<T>(fn: (pool: ConnectionPool) => Promise<T>) => Promise<T>);

class ScopedTenantDb implements TenantDb {
  constructor(
    readonly tenantId: string,
    readonly placement: TenantPlacement,
    private readonly pool: PoolSource,
    private readonly settings: TenantSettings,
    private readonly sharedPool: ConnectionPool,
    private readonly sharedSettings: TenantSettings,
    private readonly observe: ((seconds: number) => void) | undefined,
    private readonly reload: Reload | undefined,
  ) {}

  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    const run = this.#with((pool) => pool.scopedQuery<R>(this.settings, sql, params));
    return this.reload ? this.#movable(run) : run;
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    const run = this.#with((pool) => pool.scopedTransaction(this.settings, fn));
    return this.reload ? this.#movable(run) : run;
  }

  /**
   * A statement the old copy of a moved tenant refused (sealed), or that found the copy gone:
   * 503 with Retry-After, the transaction rolled back, nothing written. The handle's SQL names its
   * copy's tables, so it cannot be run again elsewhere; the caller's retry resolves the tenant
   * afresh (the flip reaches every process's cache within moments).
   */
  #movable<T>(run: Promise<T>): Promise<T> {
    // A catch on the statement's own promise: no async frame per statement on the hot path.
    return run.catch(async (error: unknown) => {
      if (!isSqlState(error, 'TENANT_SEALED')) {
        if (!DROPPED_COPY.some((name) => isSqlState(error, name)) || !this.reload) throw error;
        const fresh = await this.reload(this.tenantId);
        if (!fresh || samePlacement(placementOf(fresh), this.placement)) throw error;
      }
      throw new TenantryError('unavailable', 'the tenant has just moved to its new place; retry', {
        retryAfterSeconds: 1,
      });
    });
  }

  // A database tenant's pool opens on its first statement, not when a request merely resolves.
  #with<T>(fn: (pool: ConnectionPool) => Promise<T>): Promise<T> {
    const run = typeof this.pool === 'function' ? this.pool(fn) : fn(this.pool);
    const observe = this.observe;
    if (!observe) return run;
    const started = performance.now();
    const done = () => observe((performance.now() - started) / 1000);
    run.then(done, done);
    return run;
  }

  queryShared<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.sharedPool.scopedQuery<R>(this.sharedSettings, sql, params);
  }
}

function samePlacement(a: TenantPlacement, b: TenantPlacement): boolean {
  return a.schema === b.schema && a.database === b.database && (a.server ?? 'main') === (b.server ?? 'main');
}

/** Hands out tenant-bound database handles, on the right pool for the tenant's isolation level. */
export class TenantDataAccess {
  readonly #db: Database;
  readonly #live: LiveConfig;

  /** Read at each use: a reload's values apply to the next call. */
  get #config(): TenantryConfig {
    return this.#live.current;
  }
  readonly #databases: TenantDatabases | undefined;

  readonly #observe: ((tenant: string, seconds: number) => void) | undefined;
  readonly #reload: Reload | undefined;

  /**
   * `reload` reads a tenant as the control plane has it now: it tells a copy that a move dropped
   * from a missing table.
   */
  constructor(
    db: Database,
    config: LiveConfig,
    databases: TenantDatabases | undefined,
    observe?: (tenantSlug: string, seconds: number) => void,
    reload?: Reload,
  ) {
    this.#db = db;
    this.#live = config;
    this.#databases = databases;
    this.#observe = observe;
    this.#reload = reload;
  }

  /**
   * Global admins' handle on shared entities: the owner pool, no tenant. Only admin routes get
   * it; tenant handles read shared tables as the runtime role, which may only SELECT them.
   */
  forSharedAdmin(): TenantDb {
    const owner = this.#db.owner;
    return {
      tenantId: '',
      placement: { tenantId: '', schema: SHARED_SCHEMA, database: undefined, server: undefined },
      query: (sql, params) => owner.query(sql, params),
      transaction: (fn) => owner.transaction(fn),
      queryShared: (sql, params) => owner.query(sql, params),
    };
  }

  /** Handles per tenant value: a Tenant is immutable and replaced on change, so this never goes stale. */
  readonly #handles = new WeakMap<Tenant, TenantDb>();

  forTenant(tenant: Tenant): TenantDb {
    let handle = this.#handles.get(tenant);
    if (!handle) {
      handle = this.#create(tenant);
      this.#handles.set(tenant, handle);
    }
    return handle;
  }

  /**
   * One transaction of `tenant` for the lifecycle's bulk work (backup, restore): the tenant's
   * settings like any request, COPY in and out, and no statement timeout (a COPY of a large
   * tenant outlasts any request's limit). With `owner`, it runs on the owner's pool as the owner
   * (a restore stages rows in temporary tables, which the runtime role may not create) and turns
   * to the runtime role with `asRuntimeRole` for what row security must check. Not for request code.
   */
  bulkTransaction<T>(
    tenant: Tenant,
    fn: (tx: Transaction) => Promise<T>,
    options: TransactionOptions & { readonly owner?: boolean } = {},
  ): Promise<T> {
    const placement = placementOf(tenant);
    const settings: TenantSettings = {
      ...tenantSettings(tenant, this.#config).settings,
      ...(options.owner ? { role: 'none' } : {}),
      statementTimeoutMs: 0,
    };
    const kind = options.owner ? 'owner' : 'runtime';
    if (!placement.database) {
      return this.#db[kind].scopedTransaction(settings, fn, options);
    }
    if (!this.#databases) throw new Error('database tenants need PostgreSQL');
    return this.#databases.use(databaseLocation(placement), kind, (pool) =>
      pool.scopedTransaction(settings, fn, options),
    );
  }

  get runtimeRole(): string {
    return this.#config.database.runtimeRole;
  }

  /** Switches a bulk transaction run as the owner to the runtime role, for the rest of it. */
  async asRuntimeRole(tx: Queryable): Promise<void> {
    await tx.query("SELECT set_config('role', $1, true)", [this.runtimeRole]);
  }

  #create(tenant: Tenant): TenantDb {
    const placement = placementOf(tenant);
    const { settings, sharedSettings } = tenantSettings(tenant, this.#config);
    let pool: PoolSource = this.#db.runtime;
    if (placement.database) {
      const databases = this.#databases;
      const location = databaseLocation(placement);
      if (!databases) throw new Error('database tenants need PostgreSQL');
      pool = (fn) => databases.use(location, 'runtime', fn);
    }
    return new ScopedTenantDb(
      tenant.id,
      placement,
      pool,
      settings,
      this.#db.runtime,
      sharedSettings,
      this.#observe && ((seconds: number) => this.#observe?.(tenant.slug, seconds)),
      this.#reload,
    );
  }
}
