/** A row as drivers return it: column name to parsed value. */
export type Row = Record<string, unknown>;

export interface QueryResult<R extends Row = Row> {
  readonly rows: R[];
  readonly rowCount: number;
}

/** Anything that runs one parameterised statement: a pool, a session or a transaction. */
export interface Queryable {
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/**
 * One transaction: statements, and PostgreSQL's COPY in and out of it (backups and restores move
 * rows this way, never row by row).
 */
export interface Transaction extends Queryable {
  /**
   * Runs `COPY (...) TO STDOUT` and yields its text as it arrives. On PGlite the whole result
   * comes as one piece (`copyHoldsResult`): callers that need flat memory page their query.
   */
  copyOut(sql: string): AsyncIterable<Buffer>;
  /**
   * Runs `COPY ... FROM STDIN` with `data` (COPY text, whole lines) and returns the rows copied.
   * On PGlite the text goes in several COPY statements of a few MiB each.
   */
  copyIn(sql: string, data: AsyncIterable<Buffer>): Promise<number>;
  readonly copyHoldsResult: boolean;
}

export interface TransactionOptions {
  /**
   * A `REPEATABLE READ READ ONLY` transaction: every statement sees one snapshot, and writers go
   * on meanwhile. `'writable'`: the same snapshot, and the transaction may write (a move's copy:
   * every table read as of one moment, written elsewhere). (PGlite holds its one session for a
   * transaction: nothing changes under it.)
   */
  readonly snapshot?: boolean | 'writable';
}

/** A connection held for a while (one session); statements run in order on it. */
export interface Session extends Queryable {
  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T>;
}

/**
 * What a tenant transaction sets, all transaction-local (`set_config(..., true)`): nothing
 * survives the transaction, so a pooled connection never carries a tenant into the next one.
 */
export interface TenantSettings {
  /** The role statements run as: owns nothing, no BYPASSRLS. */
  readonly role: string;
  readonly tenantId: string;
  /** A ready search_path value (quoted identifiers, comma-separated). */
  readonly searchPath: string;
  readonly statementTimeoutMs: number;
}

export interface ConnectionPool extends Session {
  /** Runs `fn` on one dedicated session, for session-scoped work such as advisory locks. */
  withSession<T>(fn: (session: Session) => Promise<T>): Promise<T>;
  /** One statement in its own tenant transaction: the settings and the statement in one round trip. */
  scopedQuery<R extends Row = Row>(
    settings: TenantSettings,
    sql: string,
    params?: readonly unknown[],
  ): Promise<QueryResult<R>>;
  /** Several statements in one tenant transaction. */
  scopedTransaction<T>(
    settings: TenantSettings,
    fn: (tx: Transaction) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T>;
}

/** The statement that applies TenantSettings; role first, so the rest already runs as that role. */
export const APPLY_TENANT_SETTINGS = `SELECT set_config('role', $1, true), set_config('tenantry.tenant_id', $2, true),
  set_config('search_path', $3, true), set_config('statement_timeout', $4, true)`;

export function tenantSettingsParams(settings: TenantSettings): string[] {
  return [
    settings.role,
    settings.tenantId,
    settings.searchPath,
    `${Math.trunc(settings.statementTimeoutMs)}ms`,
  ];
}

/** Prepared statements a PostgreSQL connection keeps for tenant statements, by default. */
export const DEFAULT_STATEMENT_CACHE_SIZE = 256;

export type DriverName = 'pglite' | 'postgres';

export type NotificationHandler = (payload: string) => void;

export interface Listener {
  close(): Promise<void>;
}

export interface ListenOptions {
  readonly onNotification: NotificationHandler;
  /**
   * Called when notifications may have been missed (the listening connection dropped) and
   * again once it is back: caches that depend on them must not be trusted in between.
   */
  readonly onGap?: (connected: boolean) => void;
}

/**
 * The engine's view of PostgreSQL, whatever runs it. `owner` runs migrations and admin work;
 * `runtime` serves requests and, in production, logs in as a role that owns nothing.
 */
export interface Database {
  readonly driver: DriverName;
  readonly owner: ConnectionPool;
  readonly runtime: ConnectionPool;
  /** True when other processes may share this database (so changes must be broadcast). */
  readonly shared: boolean;
  listen(channel: string, options: ListenOptions): Promise<Listener>;
  ping(): Promise<void>;
  close(): Promise<void>;
}
