import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFromStdin, to as copyToStdout } from 'pg-copy-streams';
import { databaseUnavailable, isConnectionFailure, rethrowConnectionFailure } from './connection-failure.js';
import {
  APPLY_TENANT_SETTINGS,
  type ConnectionPool,
  type Database,
  DEFAULT_STATEMENT_CACHE_SIZE,
  type Listener,
  type ListenOptions,
  type Queryable,
  type QueryResult,
  type Row,
  type Session,
  type TenantSettings,
  type Transaction,
  type TransactionOptions,
  tenantSettingsParams,
} from './database.js';
import { FairCheckout } from './fair-checkout.js';
import { pipelinedQuery, preparedName, type Statement } from './pipelined-query.js';

/** The tenant settings statement, prepared once per connection (it is the same for every tenant). */
const TENANT_SETTINGS_STATEMENT = 'tenantry_apply_tenant_settings';

type PgQueryable = Pick<pg.ClientBase, 'query'>;

const SNAPSHOT_BEGIN = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
const WRITABLE_SNAPSHOT_BEGIN = 'BEGIN ISOLATION LEVEL REPEATABLE READ';

function beginStatement(options: TransactionOptions | undefined): string {
  if (options?.snapshot === 'writable') return WRITABLE_SNAPSHOT_BEGIN;
  return options?.snapshot ? SNAPSHOT_BEGIN : 'BEGIN';
}

/** Run first in a pipeline, BEGIN turns its implicit transaction into an explicit one that outlives the Sync. */
const BEGIN: readonly Statement[] = [{ text: 'BEGIN', values: [] }];

function adapt(target: PgQueryable): Queryable {
  return {
    async query<R extends Row>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await target.query<R>(sql, params as unknown[]);
      return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
    },
  };
}

/**
 * A connection lent for one transaction or session, closed when that ends: a statement sent after
 * it (an await forgotten in the callback) is refused, instead of running on whatever the
 * connection does next, which may be another tenant's transaction (PGlite refuses it too).
 */
class LentClient implements Transaction {
  readonly #client: pg.ClientBase;
  readonly #queryable: Queryable;
  #closed = false;
  readonly copyHoldsResult = false;

  constructor(client: pg.ClientBase) {
    this.#client = client;
    this.#queryable = adapt(client);
  }

  async *copyOut(sql: string): AsyncIterable<Buffer> {
    this.assertOpen();
    const stream = this.#client.query(copyToStdout(sql));
    let finished = false;
    try {
      for await (const piece of stream as AsyncIterable<Buffer>) yield piece;
      finished = true;
    } finally {
      // Left mid-COPY, the connection would go on receiving rows nobody reads: PostgreSQL has no
      // way to stop a COPY TO but ending the session, and the pool then discards the connection.
      if (!finished) await (this.#client as pg.Client).end().catch(() => undefined);
    }
  }

  async copyIn(sql: string, data: AsyncIterable<Buffer>): Promise<number> {
    this.assertOpen();
    const stream = this.#client.query(copyFromStdin(sql));
    // A failed source destroys the COPY stream, which sends CopyFail: the COPY (and the
    // transaction) fail, and the connection stays usable.
    await pipeline(Readable.from(data, { objectMode: false }), stream);
    return stream.rowCount;
  }

  async query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    this.assertOpen();
    return this.#queryable.query<R>(sql, params);
  }

  close(): void {
    this.#closed = true;
  }

  assertOpen(): void {
    if (this.#closed) {
      throw new Error('this transaction or session is over: a statement sent after it ended is refused');
    }
  }
}

function beginFor(client: pg.ClientBase, options: TransactionOptions | undefined): () => Promise<unknown> {
  return () => client.query(beginStatement(options));
}

/** `begin` opens the transaction (by default a plain BEGIN); a failure anywhere rolls it back. */
async function inTransaction<T>(
  client: pg.ClientBase,
  fn: (tx: Transaction) => Promise<T>,
  begin: () => Promise<unknown> = () => client.query('BEGIN'),
): Promise<T> {
  const lent = new LentClient(client);
  try {
    await begin();
    const result = await fn(lent);
    lent.close();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    lent.close();
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
}

class ClientSession implements Session {
  readonly #client: pg.ClientBase;
  readonly #lent: LentClient;

  constructor(client: pg.ClientBase) {
    this.#client = client;
    this.#lent = new LentClient(client);
  }

  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#lent.query<R>(sql, params);
  }

  async transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    this.#lent.assertOpen();
    return inTransaction(this.#client, fn, beginFor(this.#client, options));
  }

  close(): void {
    this.#lent.close();
  }
}

class PostgresPool implements ConnectionPool {
  readonly pool: pg.Pool;
  readonly #statementCacheSize: number;

  readonly #checkout: FairCheckout<pg.PoolClient>;

  constructor(pool: pg.Pool, statementCacheSize: number, checkoutTimeoutMs: number) {
    this.pool = pool;
    this.#statementCacheSize = statementCacheSize;
    this.#checkout = new FairCheckout(pool.options.max ?? 10, checkoutTimeoutMs);
  }

  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.withClient((client) => adapt(client).query<R>(sql, params));
  }

  transaction<T>(fn: (tx: Transaction) => Promise<T>, options?: TransactionOptions): Promise<T> {
    return this.withClient((client) => inTransaction(client, fn, beginFor(client, options)));
  }

  withSession<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    return this.withClient((client) => {
      const session = new ClientSession(client);
      return fn(session).finally(() => session.close());
    });
  }

  async scopedQuery<R extends Row = Row>(
    settings: TenantSettings,
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<QueryResult<R>> {
    const prepare = this.#statementCacheSize > 0;
    const result = await this.withClient(
      (client) =>
        pipelinedQuery<R>(
          client,
          this.#setupFor(settings),
          prepare ? { text: sql, values: params, name: preparedName(sql) } : { text: sql, values: params },
          this.#statementCacheSize,
        ),
      settings.tenantId,
    );
    return { rows: result.rows, rowCount: result.rowCount ?? result.rows.length };
  }

  /** Settings objects live as long as their tenant handle: the statement is built once for each. */
  readonly #setups = new WeakMap<TenantSettings, readonly Statement[]>();

  #setupFor(settings: TenantSettings): readonly Statement[] {
    let setup = this.#setups.get(settings);
    if (!setup) {
      setup = [
        {
          text: APPLY_TENANT_SETTINGS,
          values: tenantSettingsParams(settings),
          ...(this.#statementCacheSize > 0 ? { name: TENANT_SETTINGS_STATEMENT } : {}),
        },
      ];
      this.#setups.set(settings, setup);
    }
    return setup;
  }

  /** BEGIN and the tenant settings go in one pipeline: the transaction costs one round trip more than its statements (COMMIT). */
  scopedTransaction<T>(
    settings: TenantSettings,
    fn: (tx: Transaction) => Promise<T>,
    options?: TransactionOptions,
  ): Promise<T> {
    const begin: readonly Statement[] = options?.snapshot
      ? [{ text: beginStatement(options), values: [] }]
      : BEGIN;
    return this.withClient(
      (client) =>
        inTransaction(client, fn, () =>
          pipelinedQuery(client, begin, this.#setupFor(settings)[0]!, this.#statementCacheSize),
        ),
      settings.tenantId,
    );
  }

  /**
   * Runs `fn` on a pooled client and releases it after. The checkout is fair between tenants
   * (`fairKey`, see FairCheckout) before pg-pool is asked, so pg-pool never makes anyone wait.
   */
  withClient<T>(fn: (client: pg.PoolClient) => Promise<T>, fairKey = ''): Promise<T> {
    const waiting = this.#checkout.acquire(fairKey);
    if (waiting === undefined) return this.#onPooledClient(fn);
    return waiting.then((handed) => (handed ? this.#onClient(handed, fn) : this.#onPooledClient(fn)));
  }

  // pg-pool's callback form: this runs on every tenant request, and its promise form allocates a
  // promise and closures more.
  #onPooledClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pool.connect((connectError, client) => {
        if (connectError || !client) {
          this.#checkout.release();
          reject(
            connectError && isConnectionFailure(connectError)
              ? databaseUnavailable(connectError)
              : (connectError ?? new Error('no client from the pool')),
          );
          return;
        }
        this.#onClient(client, fn).then(resolve, reject);
      });
    });
  }

  /** Runs `fn` on a checked-out client, then hands the client to the next waiter or returns it. */
  #onClient<T>(client: pg.PoolClient, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let running: Promise<T>;
    try {
      running = fn(client);
    } catch (error) {
      running = Promise.reject(error);
    }
    return running.then(
      (value) => {
        this.#done(client, undefined);
        return value;
      },
      (error: unknown) => {
        // A connection whose protocol state is unknown must not go back to the pool.
        this.#done(client, error instanceof Error && !('code' in error) ? error : undefined);
        rethrowConnectionFailure(error);
      },
    );
  }

  #done(client: pg.PoolClient, broken: Error | undefined): void {
    // A connection the server ended (57P01 after a terminate, a dropped database) reports a coded
    // error like any refusal, but must not be handed on: pg-pool's own check, done here too.
    const state = client as unknown as { _queryable?: boolean; _ending?: boolean };
    if (!broken && (state._queryable === false || state._ending === true)) {
      broken = new Error('the connection was closed by the server');
    }
    if (broken) {
      client.release(broken);
      this.#checkout.release();
    } else if (!this.#checkout.release(client)) {
      // Nobody was waiting: back to pg-pool (and its idle timeout).
      client.release();
    }
  }
}

export interface PostgresOptions {
  readonly url: string;
  /** Owner-role connection string; defaults to `url`. */
  readonly adminUrl?: string;
  readonly maxConnections?: number;
  /** Size of the owner pool when `adminUrl` differs from `url` (default a quarter of maxConnections). */
  readonly ownerConnections?: number;
  readonly applicationName?: string;
  /**
   * Named (prepared) statements each connection keeps for tenant statements, least recently
   * used closed first; 0 prepares nothing (for poolers that cannot hold prepared statements).
   */
  readonly statementCacheSize?: number;
  readonly onPoolError?: (error: Error) => void;
}

/** How long a request waits for a connection (a free one, or a new one being opened). */
const CHECKOUT_TIMEOUT_MS = 10_000;

const DATE_OID = 1082;
const INT8_OID = 20;

/**
 * Dates stay 'YYYY-MM-DD' strings (a Date object would shift with the process time zone), and
 * bigints become numbers when they are safe integers (entity integers are validated to be).
 */
const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === DATE_OID) return (value: string) => value;
    if (oid === INT8_OID) {
      return (value: string) => {
        const number = Number(value);
        return Number.isSafeInteger(number) ? number : value;
      };
    }
    return pg.types.getTypeParser(oid, format);
  },
} as pg.CustomTypesConfig;

/**
 * Errors of a connection surface through the statement that was running on it, or the next one
 * ("not queryable"), and the connection is then discarded. Without a listener, an error event
 * with no statement running (the server ends the session between two statements of a
 * transaction, or while the client is handed to the next waiter) would crash the process.
 */
function survive(client: pg.Client): pg.Client {
  client.on('error', () => undefined);
  return client;
}

/** A single connection of our own (not pooled): it never takes the process down. */
export function newClient(config: pg.ClientConfig): pg.Client {
  return survive(new pg.Client(config));
}

function createPool(url: string, options: PostgresOptions, max: number): pg.Pool {
  const pool = new pg.Pool({
    types: typeParsers,
    connectionString: url,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: CHECKOUT_TIMEOUT_MS,
    application_name: options.applicationName ?? 'tenantry',
  });
  // pg-pool listens for errors only while a client is idle (it reports them here); a client
  // checked out, or handed from one request to the next, needs a listener of its own for life.
  pool.on('connect', (client) => survive(client));
  pool.on('error', (error) => options.onPoolError?.(error));
  return pool;
}

class PostgresListener implements Listener {
  #client: pg.Client | undefined;
  #closed = false;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly url: string,
    private readonly channel: string,
    private readonly options: ListenOptions,
  ) {}

  async start(): Promise<void> {
    await this.#connect();
  }

  async #connect(): Promise<void> {
    // Keep-alive probes find a server that vanished without closing the socket (a network cut):
    // otherwise the listener would wait for notifications that never come, caches trusted.
    const client = new pg.Client({
      connectionString: this.url,
      application_name: 'tenantry-listener',
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    client.on('notification', (message) => {
      if (message.channel === this.channel) this.options.onNotification(message.payload ?? '');
    });
    client.on('error', () => this.#lost(client));
    client.on('end', () => this.#lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(this.channel)}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
  }

  #lost(client: pg.Client): void {
    if (this.#client !== client || this.#closed) return;
    this.#client = undefined;
    client.end().catch(() => undefined);
    this.options.onGap?.(false);
    this.#scheduleReconnect(250);
  }

  #scheduleReconnect(delay: number): void {
    if (this.#closed) return;
    this.#retryTimer = setTimeout(() => {
      this.#connect().then(
        () => this.options.onGap?.(true),
        () => this.#scheduleReconnect(Math.min(delay * 2, 5_000)),
      );
    }, delay);
    this.#retryTimer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retryTimer) clearTimeout(this.#retryTimer);
    const client = this.#client;
    this.#client = undefined;
    if (client) await client.end().catch(() => undefined);
  }
}

export async function openPostgres(options: PostgresOptions): Promise<Database> {
  const max = options.maxConnections ?? 10;
  const runtimePool = createPool(options.url, options, max);
  const ownerPool =
    options.adminUrl && options.adminUrl !== options.url
      ? createPool(options.adminUrl, options, options.ownerConnections ?? Math.max(2, Math.ceil(max / 4)))
      : runtimePool;
  const statementCacheSize = options.statementCacheSize ?? DEFAULT_STATEMENT_CACHE_SIZE;
  const runtime = new PostgresPool(runtimePool, statementCacheSize, CHECKOUT_TIMEOUT_MS);
  const owner =
    ownerPool === runtimePool
      ? runtime
      : new PostgresPool(ownerPool, statementCacheSize, CHECKOUT_TIMEOUT_MS);
  const listeners = new Set<Listener>();

  return {
    driver: 'postgres',
    owner,
    runtime,
    shared: true,
    async listen(channel: string, listenOptions: ListenOptions): Promise<Listener> {
      const listener = new PostgresListener(options.adminUrl ?? options.url, channel, listenOptions);
      await listener.start();
      listeners.add(listener);
      return {
        close: async () => {
          listeners.delete(listener);
          await listener.close();
        },
      };
    },
    async ping() {
      await runtimePool.query('SELECT 1').catch(rethrowConnectionFailure);
    },
    async close() {
      await Promise.all([...listeners].map((listener) => listener.close()));
      await runtimePool.end();
      if (ownerPool !== runtimePool) await ownerPool.end();
    },
  };
}
