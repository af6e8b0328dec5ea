import { PGlite, type Transaction } from '@electric-sql/pglite';
import {
  APPLY_TENANT_SETTINGS,
  type ConnectionPool,
  type Database,
  type Listener,
  type ListenOptions,
  type Queryable,
  type QueryResult,
  type Row,
  type Session,
  type TenantSettings,
  tenantSettingsParams,
} from './database.js';

function adapt(target: Pick<PGlite, 'query'> | Transaction): Queryable {
  return {
    async query<R extends Row>(sql: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await target.query<R>(sql, params as unknown[]);
      return { rows: result.rows, rowCount: result.affectedRows ?? result.rows.length };
    },
  };
}

/**
 * PGlite is one PostgreSQL session in this process: statements are queued by PGlite itself
 * and `transaction` holds it exclusively, so the pool is that session.
 */
class PgliteSession implements ConnectionPool {
  readonly #db: PGlite;
  readonly #queryable: Queryable;

  constructor(db: PGlite) {
    this.#db = db;
    this.#queryable = adapt(db);
  }

  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return this.#queryable.query<R>(sql, params);
  }

  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.#db.transaction((tx) => fn(adapt(tx)));
  }

  withSession<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    // As on PostgreSQL, the handle is good for the length of `fn` only.
    let open = true;
    const assertOpen = () => {
      if (!open) throw new Error('this session is over: a statement sent after it ended is refused');
    };
    const session: Session = {
      query: async (sql, params) => {
        assertOpen();
        return this.query(sql, params);
      },
      transaction: async (inner) => {
        assertOpen();
        return this.transaction(inner);
      },
    };
    return fn(session).finally(() => {
      open = false;
    });
  }

  // In-process: a transaction costs no network round trip, so the settings go in their own statement.
  scopedQuery<R extends Row = Row>(
    settings: TenantSettings,
    sql: string,
    params: readonly unknown[] = [],
  ): Promise<QueryResult<R>> {
    return this.scopedTransaction(settings, (tx) => tx.query<R>(sql, params));
  }

  scopedTransaction<T>(settings: TenantSettings, fn: (tx: Queryable) => Promise<T>): Promise<T> {
    return this.transaction(async (tx) => {
      await tx.query(APPLY_TENANT_SETTINGS, tenantSettingsParams(settings));
      return fn(tx);
    });
  }
}

export interface PgliteOptions {
  /** A directory for the data, or undefined for an in-memory database. */
  readonly dataDir?: string;
}

export async function openPglite(options: PgliteOptions = {}): Promise<Database> {
  // Same value shapes as the pg driver: dates as 'YYYY-MM-DD', bigints as numbers when safe.
  const parsers = {
    1082: (value: string) => value,
    20: (value: string) => {
      const number = Number(value);
      return Number.isSafeInteger(number) ? number : value;
    },
  };
  const db = await PGlite.create(
    options.dataDir === undefined ? { parsers } : { dataDir: options.dataDir, parsers },
  );
  const session = new PgliteSession(db);
  return {
    driver: 'pglite',
    owner: session,
    runtime: session,
    shared: false,
    async listen(channel: string, listenOptions: ListenOptions): Promise<Listener> {
      const unlisten = await db.listen(channel, listenOptions.onNotification);
      return { close: () => unlisten() };
    },
    async ping() {
      await db.query('SELECT 1');
    },
    async close() {
      if (!db.closed) await db.close();
    },
  };
}
