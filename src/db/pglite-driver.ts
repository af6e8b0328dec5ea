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
  type Transaction as TenantryTransaction,
  type TenantSettings,
  type TransactionOptions,
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

/** PGlite copies through a blob it holds whole: COPY text goes in pieces of about this size. */
const COPY_IN_BYTES = 4 * 1024 * 1024;

/** `COPY ... TO STDOUT` / `FROM STDIN` as PGlite spells them: its virtual `/dev/blob`. */
function throughBlob(sql: string, direction: 'TO STDOUT' | 'FROM STDIN'): string {
  const pattern = direction === 'TO STDOUT' ? /\bTO\s+STDOUT\s*$/i : /\bFROM\s+STDIN\s*$/i;
  if (!pattern.test(sql)) throw new Error(`a COPY statement must end with ${direction}`);
  return sql.replace(pattern, direction === 'TO STDOUT' ? "TO '/dev/blob'" : "FROM '/dev/blob'");
}

/**
 * `/dev/blob` is a file to PostgreSQL, and only a superuser (PGlite's own user) may COPY to or
 * from a file: the COPY runs as the session's user, the transaction's role set back right after.
 * So a COPY on PGlite skips row security: callers name the tenant in the COPY's query (backups
 * do), or copy into a table with no rows of anyone (restores' staging tables).
 */
async function asSessionUser<T>(tx: Transaction, fn: () => Promise<T>): Promise<T> {
  const { rows } = await tx.query<{ role: string }>("SELECT current_setting('role') AS role");
  await tx.query('SET LOCAL ROLE NONE');
  try {
    return await fn();
  } finally {
    await tx.query("SELECT set_config('role', $1, true)", [rows[0]?.role ?? 'none']);
  }
}

function adaptTransaction(tx: Transaction): TenantryTransaction {
  const queryable = adapt(tx);
  return {
    query: (sql, params) => queryable.query(sql, params),
    copyHoldsResult: true,
    async *copyOut(sql: string): AsyncIterable<Buffer> {
      const result = await asSessionUser(tx, () => tx.query(throughBlob(sql, 'TO STDOUT')));
      if (result.blob) yield Buffer.from(await result.blob.arrayBuffer());
    },
    async copyIn(sql: string, data: AsyncIterable<Buffer>): Promise<number> {
      const statement = throughBlob(sql, 'FROM STDIN');
      let rows = 0;
      const send = async (text: Buffer) => {
        const result = await asSessionUser(tx, () => tx.query(statement, [], { blob: new Blob([text]) }));
        rows += result.affectedRows ?? 0;
      };
      let pending: Buffer[] = [];
      let pendingBytes = 0;
      for await (const piece of data) {
        pending.push(piece);
        pendingBytes += piece.length;
        if (pendingBytes < COPY_IN_BYTES) continue;
        const joined = Buffer.concat(pending, pendingBytes);
        const cut = joined.lastIndexOf(0x0a) + 1;
        if (cut === 0) continue;
        await send(joined.subarray(0, cut));
        pending = cut < joined.length ? [joined.subarray(cut)] : [];
        pendingBytes = joined.length - cut;
      }
      if (pendingBytes > 0) await send(Buffer.concat(pending, pendingBytes));
      return rows;
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

  // A transaction holds PGlite's one session: it is a snapshot already, whatever `options` say.
  transaction<T>(fn: (tx: TenantryTransaction) => Promise<T>, _options?: TransactionOptions): Promise<T> {
    return this.#db.transaction((tx) => fn(adaptTransaction(tx)));
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
      transaction: async (inner, options) => {
        assertOpen();
        return this.transaction(inner, options);
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

  scopedTransaction<T>(
    settings: TenantSettings,
    fn: (tx: TenantryTransaction) => Promise<T>,
    _options?: TransactionOptions,
  ): Promise<T> {
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
