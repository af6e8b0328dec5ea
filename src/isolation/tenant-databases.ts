import { type ConnectionPool, type Database, DEFAULT_STATEMENT_CACHE_SIZE } from '../db/database.js';
import { openPostgres } from '../db/postgres-driver.js';
import { TenantryError } from '../errors.js';
import type { ServerUrls } from './database-servers.js';

export interface TenantDatabasesOptions {
  /** Connection strings of a database server; tenant databases are reached by swapping the name. */
  readonly urls: (server: string) => Promise<ServerUrls>;
  /** Connections open across all tenant databases at most. */
  readonly maxConnections: number;
  /** Connections per tenant database at most (runtime and owner pools together). */
  readonly perDatabase?: number;
  /** A pool unused this long is closed. */
  readonly idleMs?: number;
  /** How long a statement waits for a pool slot before answering `unavailable`. */
  readonly acquireTimeoutMs?: number;
  /** Prepared statements per connection (see `database.statementCacheSize`). */
  readonly statementCacheSize?: number;
}

/** The connection string of another database on the same server. */
export function databaseUrl(base: string, database: string): string {
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    // The error would carry the connection string, password included: say what, not which.
    throw new TenantryError(
      'unavailable',
      'the configured connection string cannot be turned into a tenant database URL (use the postgres://user:password@host:port/db form)',
    );
  }
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/** A tenant database: its server and its name there. */
export interface DatabaseLocation {
  readonly server: string;
  readonly database: string;
}

interface Entry {
  readonly key: string;
  readonly opened: Promise<Database>;
  leases: number;
  lastUsed: number;
}

export type PoolKind = 'runtime' | 'owner';

/**
 * Connection pools to `database` tenants, opened on first use and closed when idle. At most
 * `maxConnections / perDatabase` pools are open at once, so connections across all tenant
 * databases stay bounded. A pool is leased for the length of each statement or transaction and
 * is never closed while leased: when every slot is busy, the next tenant waits for one.
 */
export class TenantDatabases {
  readonly #options: Required<TenantDatabasesOptions>;
  readonly #entries = new Map<string, Entry>();
  readonly #waiters: (() => void)[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(options: TenantDatabasesOptions) {
    this.#options = {
      perDatabase: 2,
      idleMs: 60_000,
      acquireTimeoutMs: 10_000,
      statementCacheSize: DEFAULT_STATEMENT_CACHE_SIZE,
      ...options,
    };
    this.#sweeper = setInterval(
      () => this.#closeIdle(this.#options.idleMs),
      Math.max(1_000, this.#options.idleMs / 2),
    );
    this.#sweeper.unref();
  }

  get maxPools(): number {
    return Math.max(1, Math.floor(this.#options.maxConnections / this.#options.perDatabase));
  }

  get openPools(): number {
    return this.#entries.size;
  }

  /** Pools in use by a statement or transaction right now. */
  get leasedPools(): number {
    let leased = 0;
    for (const entry of this.#entries.values()) if (entry.leases > 0) leased += 1;
    return leased;
  }

  /** Runs `fn` with a pool of the tenant database, leased for the duration. */
  async use<T>(
    location: DatabaseLocation,
    kind: PoolKind,
    fn: (pool: ConnectionPool) => Promise<T>,
  ): Promise<T> {
    const entry = await this.#acquire(location);
    try {
      const db = await entry.opened;
      return await fn(kind === 'owner' ? db.owner : db.runtime);
    } finally {
      entry.leases -= 1;
      entry.lastUsed = Date.now();
      this.#wakeOne();
    }
  }

  async #acquire(location: DatabaseLocation): Promise<Entry> {
    const deadline = Date.now() + this.#options.acquireTimeoutMs;
    const key = keyOf(location);
    for (;;) {
      if (this.#closed) throw new TenantryError('unavailable', 'the server is shutting down');
      const existing = this.#entries.get(key);
      if (existing) {
        existing.leases += 1;
        return existing;
      }
      if (this.#entries.size >= this.maxPools) this.#evictOneIdle();
      if (this.#entries.size < this.maxPools) {
        const entry = this.#open(location);
        entry.leases += 1;
        return entry;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        throw new TenantryError('unavailable', 'every tenant database connection is busy; retry shortly');
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        // A waiter that gives up leaves the queue, so a freed slot never wakes nobody.
        const timer = setTimeout(() => {
          const index = this.#waiters.indexOf(wake);
          if (index >= 0) this.#waiters.splice(index, 1);
          resolve();
        }, remaining);
        this.#waiters.push(wake);
      });
    }
  }

  #open(location: DatabaseLocation): Entry {
    const key = keyOf(location);
    const opened = this.#options.urls(location.server).then((urls) => {
      const separateOwner = urls.adminUrl !== urls.url;
      return openPostgres({
        url: databaseUrl(urls.url, location.database),
        adminUrl: databaseUrl(urls.adminUrl, location.database),
        maxConnections: separateOwner
          ? Math.max(1, this.#options.perDatabase - 1)
          : this.#options.perDatabase,
        ownerConnections: 1,
        applicationName: 'tenantry-tenant',
        statementCacheSize: this.#options.statementCacheSize,
      });
    });
    const entry: Entry = { key, opened, leases: 0, lastUsed: Date.now() };
    this.#entries.set(key, entry);
    opened.catch(() => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
      this.#wakeOne();
    });
    return entry;
  }

  #evictOneIdle(): void {
    let oldest: Entry | undefined;
    for (const entry of this.#entries.values()) {
      if (entry.leases === 0 && (!oldest || entry.lastUsed < oldest.lastUsed)) oldest = entry;
    }
    if (oldest) this.#close(oldest);
  }

  #closeIdle(idleMs: number): void {
    const now = Date.now();
    for (const entry of [...this.#entries.values()]) {
      if (entry.leases === 0 && now - entry.lastUsed >= idleMs) this.#close(entry);
    }
  }

  #close(entry: Entry): Promise<void> {
    this.#entries.delete(entry.key);
    this.#wakeOne();
    return entry.opened.then(
      (db) => db.close(),
      () => undefined,
    );
  }

  #wakeOne(): void {
    this.#waiters.shift()?.();
  }

  /** Closes the pool of one database (before it is dropped); waits for its leases to end. */
  async release(location: DatabaseLocation): Promise<void> {
    const key = keyOf(location);
    const entry = this.#entries.get(key);
    if (!entry) return;
    while (entry.leases > 0) await new Promise((resolve) => setTimeout(resolve, 20));
    if (this.#entries.get(key) === entry) await this.#close(entry);
  }

  /** Closes the pools of every database on `server` (its URLs changed); each waits for its leases. */
  async releaseServer(server: string): Promise<void> {
    const prefix = `${server}/`;
    const locations = [...this.#entries.keys()]
      .filter((key) => key.startsWith(prefix))
      .map((key) => ({ server, database: key.slice(prefix.length) }));
    await Promise.all(locations.map((location) => this.release(location)));
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const wake of this.#waiters.splice(0)) wake();
    await Promise.all([...this.#entries.values()].map((entry) => this.#close(entry)));
  }
}

function keyOf(location: DatabaseLocation): string {
  return `${location.server}/${location.database}`;
}
