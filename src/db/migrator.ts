import { LOCK_NAMESPACE, LockKey } from './advisory-locks.js';
import {
  controlPlaneMigrations,
  latestControlPlaneVersion,
  type Migration,
} from './control-plane-migrations.js';
import type { ConnectionPool, Session } from './database.js';

export class DatabaseTooNewError extends Error {
  constructor(
    readonly databaseVersion: number,
    readonly codeVersion: number,
  ) {
    super(
      `the database's control plane is at version ${databaseVersion}, newer than this code (${codeVersion}); ` +
        'upgrade Tenantry before running it against this database',
    );
    this.name = 'DatabaseTooNewError';
  }
}

export interface MigrationReport {
  readonly from: number;
  readonly to: number;
  readonly applied: readonly { version: number; name: string }[];
}

async function appliedVersions(session: Session): Promise<number[]> {
  const { rows } = await session.query<{ version: number }>(
    'SELECT version FROM tenantry.schema_migrations ORDER BY version',
  );
  return rows.map((row) => Number(row.version));
}

/**
 * Brings the control plane to the latest version. Safe when several processes start at once:
 * the session-level advisory lock makes the others wait, and they then find nothing to do.
 */
export async function migrateControlPlane(
  pool: ConnectionPool,
  migrations: readonly Migration[] = controlPlaneMigrations,
): Promise<MigrationReport> {
  const latest = migrations.at(-1)?.version ?? latestControlPlaneVersion;
  return pool.withSession(async (session) => {
    await session.query('SELECT pg_advisory_lock($1, $2)', [
      LOCK_NAMESPACE,
      LockKey.CONTROL_PLANE_MIGRATIONS,
    ]);
    try {
      await session.query('CREATE SCHEMA IF NOT EXISTS tenantry');
      await session.query(
        `CREATE TABLE IF NOT EXISTS tenantry.schema_migrations (
           version integer PRIMARY KEY,
           name text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now()
         )`,
      );
      const applied = await appliedVersions(session);
      const current = applied.at(-1) ?? 0;
      if (current > latest) throw new DatabaseTooNewError(current, latest);
      const done = new Set(applied);
      const report: { version: number; name: string }[] = [];
      for (const migration of migrations) {
        if (done.has(migration.version)) continue;
        await session.transaction(async (tx) => {
          for (const statement of splitStatements(migration.sql)) await tx.query(statement);
          await tx.query('INSERT INTO tenantry.schema_migrations (version, name) VALUES ($1, $2)', [
            migration.version,
            migration.name,
          ]);
        });
        report.push({ version: migration.version, name: migration.name });
      }
      return { from: current, to: report.at(-1)?.version ?? current, applied: report };
    } finally {
      await session.query('SELECT pg_advisory_unlock($1, $2)', [
        LOCK_NAMESPACE,
        LockKey.CONTROL_PLANE_MIGRATIONS,
      ]);
    }
  });
}

/** The control plane version the database is at, or 0 before the first migration. */
export async function controlPlaneVersion(pool: ConnectionPool): Promise<number> {
  const exists = await pool.query<{ ledger: string | null }>(
    "SELECT to_regclass('tenantry.schema_migrations')::text AS ledger",
  );
  if (!exists.rows[0]?.ledger) return 0;
  const { rows } = await pool.query<{ version: number | null }>(
    'SELECT max(version) AS version FROM tenantry.schema_migrations',
  );
  return Number(rows[0]?.version ?? 0);
}

/**
 * Splits a migration script on top-level semicolons so each statement runs with the extended
 * protocol on both drivers. Migration scripts are ours: no dollar quoting or semicolons in strings.
 */
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*(?:\n|$)/)
    .map((statement) =>
      statement
        .split('\n')
        .filter((line) => !line.trim().startsWith('--'))
        .join('\n')
        .trim(),
    )
    .filter((statement) => statement.length > 0);
}
