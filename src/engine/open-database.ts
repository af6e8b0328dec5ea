import { mkdirSync } from 'node:fs';
import lockfile from 'proper-lockfile';
import type { TenantryConfig } from '../config/config-schema.js';
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

export interface OpenDatabaseOptions {
  readonly onPoolError?: (error: Error) => void;
  /** Owner connections (when the owner has a URL of its own); default a quarter of maxConnections. */
  readonly ownerConnections?: number;
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
    return openPostgres({
      url: config.database.url,
      ...(config.database.adminUrl === undefined ? {} : { adminUrl: config.database.adminUrl }),
      maxConnections: config.database.maxConnections,
      statementCacheSize: config.database.statementCacheSize,
      ...(options.ownerConnections === undefined ? {} : { ownerConnections: options.ownerConnections }),
      ...(options.onPoolError ? { onPoolError: options.onPoolError } : {}),
    });
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
