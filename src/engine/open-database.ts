import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import type { TenantryConfig } from '../config/config-schema.js';
import { DatabaseUnreachableError, isConnectionFailure } from '../db/connection-failure.js';
import type { Database } from '../db/database.js';
import { openPglite } from '../db/pglite-driver.js';
import { openPostgres } from '../db/postgres-driver.js';

/** The embedded database's directory is open in another process (PGlite is single-process). */
export class DataDirInUseError extends Error {
  constructor(readonly dataDir: string) {
    super(`the embedded database in ${dataDir} is in use by another process`);
    this.name = 'DataDirInUseError';
  }
}

/**
 * The data directory holds no embedded database and the caller may not create one: a command run
 * in the wrong directory would otherwise write into a new database that no server reads.
 */
export class DataDirMissingError extends Error {
  constructor(readonly dataDir: string) {
    super(
      `no embedded database in ${dataDir}: set TENANTRY_DATA_DIR (or dataDir in the config; default ` +
        './tenantry-data) to the directory the server uses, or DATABASE_URL for PostgreSQL; ' +
        '`tenantry init-db` creates a new one',
    );
    this.name = 'DataDirMissingError';
  }
}

export interface OpenDatabaseOptions {
  readonly onPoolError?: (error: Error) => void;
  /** Owner connections (when the owner has a URL of its own); default a quarter of maxConnections. */
  readonly ownerConnections?: number;
  /** Create the embedded database when the data directory holds none (default true). */
  readonly createDataDir?: boolean;
}

/**
 * Opens PostgreSQL when a URL is configured, otherwise the embedded PGlite database in the data
 * directory, holding a lock on it for as long as it is open.
 */
export async function openDatabase(
  config: TenantryConfig,
  options: OpenDatabaseOptions = {},
): Promise<Database> {
  if (config.database.url !== undefined) {
    const db = await openPostgres({
      url: config.database.url,
      ...(config.database.adminUrl === undefined ? {} : { adminUrl: config.database.adminUrl }),
      maxConnections: config.database.maxConnections,
      statementCacheSize: config.database.statementCacheSize,
      ...(options.ownerConnections === undefined ? {} : { ownerConnections: options.ownerConnections }),
      ...(options.onPoolError ? { onPoolError: options.onPoolError } : {}),
    });
    try {
      await reachOwner(db, config.database, config.database.url);
    } catch (error) {
      await db.close().catch(() => undefined);
      throw error;
    }
    return db;
  }
  // PG_VERSION is the first thing initdb writes: without it PGlite would make a new database.
  if (options.createDataDir === false && !existsSync(join(config.dataDir, 'PG_VERSION'))) {
    throw new DataDirMissingError(config.dataDir);
  }
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(config.dataDir, { stale: 15_000, update: 5_000, realpath: false });
  } catch (error) {
    if ((error as { code?: string }).code === 'ELOCKED') throw new DataDirInUseError(config.dataDir);
    throw error;
  }
  try {
    const db = await openPglite({ dataDir: config.dataDir });
    return {
      ...db,
      async close() {
        await db.close();
        await release().catch(() => undefined);
      },
    };
  } catch (error) {
    await release().catch(() => undefined);
    throw error;
  }
}

/**
 * Connects the owner pool once, which opening uses first (migrations, LISTEN): a server that cannot
 * be reached is named with the setting its URL came from, not as a bare socket error.
 */
async function reachOwner(db: Database, database: TenantryConfig['database'], url: string): Promise<void> {
  try {
    await db.owner.query('SELECT 1');
  } catch (error) {
    const cause = error instanceof Error && isConnectionFailure(error.cause) ? error.cause : error;
    if (!isConnectionFailure(cause)) throw error;
    const { adminUrl } = database;
    throw adminUrl !== undefined && adminUrl !== url
      ? new DatabaseUnreachableError(database.adminUrlSource ?? 'database.adminUrl', adminUrl, cause)
      : new DatabaseUnreachableError(database.urlSource ?? 'database.url', url, cause);
  }
}
