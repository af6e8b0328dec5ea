import { LRUCache } from 'lru-cache';
import type { ConnectionPool, Database } from '../db/database.js';
import { openPostgres } from '../db/postgres-driver.js';

export interface TenantDatabasesOptions {
  /** Owner connection string of the main server; tenant databases are reached by swapping the name. */
  readonly adminUrl: string;
  readonly runtimeUrl: string;
  /** Connections open across all tenant databases at most. */
  readonly maxConnections: number;
  /** Connections per tenant database at most. */
  readonly perDatabase?: number;
  /** A pool unused this long is closed. */
  readonly idleMs?: number;
}

export function databaseUrl(base: string, database: string): string {
  const url = new URL(base);
  url.pathname = `/${encodeURIComponent(database)}`;
  return url.toString();
}

/**
 * Connection pools to `database` tenants, opened on first use and closed when idle. The number
 * of open pools is capped so that connections across all tenant databases stay under
 * `maxConnections`: opening one more closes the least recently used.
 */
export class TenantDatabases {
  readonly #options: TenantDatabasesOptions;
  readonly #pools: LRUCache<string, Database>;
  readonly #closing = new Set<Promise<void>>();

  constructor(options: TenantDatabasesOptions) {
    this.#options = options;
    const perDatabase = options.perDatabase ?? 2;
    this.#pools = new LRUCache<string, Database>({
      max: Math.max(1, Math.floor(options.maxConnections / perDatabase)),
      ttl: options.idleMs ?? 60_000,
      updateAgeOnGet: true,
      ttlAutopurge: true,
      dispose: (db) => {
        const closing = db.close().catch(() => undefined);
        this.#closing.add(closing);
        void closing.finally(() => this.#closing.delete(closing));
      },
    });
  }

  /** The runtime pool of a tenant database (tenant requests). */
  async runtime(database: string): Promise<ConnectionPool> {
    return (await this.#open(database)).runtime;
  }

  /** The owner pool of a tenant database (provisioning, migrations). */
  async owner(database: string): Promise<ConnectionPool> {
    return (await this.#open(database)).owner;
  }

  get openPools(): number {
    return this.#pools.size;
  }

  async #open(database: string): Promise<Database> {
    const existing = this.#pools.get(database);
    if (existing) return existing;
    const perDatabase = this.#options.perDatabase ?? 2;
    const db = await openPostgres({
      url: databaseUrl(this.#options.runtimeUrl, database),
      adminUrl: databaseUrl(this.#options.adminUrl, database),
      maxConnections: perDatabase,
      applicationName: 'tenantry-tenant',
    });
    const raced = this.#pools.get(database);
    if (raced) {
      await db.close();
      return raced;
    }
    this.#pools.set(database, db);
    return db;
  }

  /** Closes the pool of one database (before it is dropped). */
  async release(database: string): Promise<void> {
    const db = this.#pools.get(database);
    if (!db) return;
    this.#pools.delete(database);
    await Promise.all([...this.#closing]);
  }

  async close(): Promise<void> {
    this.#pools.clear();
    await Promise.all([...this.#closing]);
  }
}
