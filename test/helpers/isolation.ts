import type { ConnectionPool, Database, Queryable, TenantSettings } from '../../src/db/database.js';
import { quoteIdent } from '../../src/db/identifiers.js';
import { openPostgres } from '../../src/db/postgres-driver.js';
import { sqlStateOf } from '../../src/db/sqlstate.js';
import { tenantSettings } from '../../src/isolation/tenant-db.js';
import { placementOf, type TenantPlacement } from '../../src/isolation/tenant-placement.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { DRIVERS, type TestDriver, type TestEnv } from './harness.js';
import { databaseUrl } from './postgres.js';

/** Isolation levels each driver supports. */
export const LEVELS: Record<TestDriver, readonly IsolationLevel[]> = {
  pglite: ['row', 'schema'],
  postgres: ['row', 'schema', 'database'],
};

/** Every (driver, level) pair the suites run on. */
export const DRIVER_LEVELS: readonly (readonly [TestDriver, IsolationLevel])[] = DRIVERS.flatMap((driver) =>
  LEVELS[driver].map((level) => [driver, level] as const),
);

export interface TestTenant {
  readonly id: string;
  readonly slug: string;
  readonly key: string;
  readonly isolation: IsolationLevel;
  readonly placement: TenantPlacement;
}

export async function createTestTenant(
  env: TestEnv,
  slug: string,
  isolation: IsolationLevel,
  extra: Record<string, unknown> = {},
): Promise<TestTenant> {
  const created = await env.createTenant(slug, { ...extra, isolation });
  return { ...created, isolation, placement: placementOf({ id: created.id, isolation }) };
}

export const asTenant = (tenant: { key: string }) => ({ 'x-api-key': tenant.key });

/** Where a placement's tables are reached: its database (the env's, or its own) and schema. */
export function placeKey(placement: TenantPlacement): string {
  return `${placement.database ?? ''}/${placement.schema}`;
}

/**
 * Owner and runtime pools of every database that holds tenant rows: the env's own database, and
 * the database of each `database` tenant (opened here, as the test's own connections).
 */
export class Places {
  readonly #env: TestEnv;
  readonly #opened = new Map<string, Database>();

  constructor(env: TestEnv) {
    this.#env = env;
  }

  async of(placement: TenantPlacement): Promise<{ owner: ConnectionPool; runtime: ConnectionPool }> {
    if (!placement.database)
      return { owner: this.#env.engine.db.owner, runtime: this.#env.engine.db.runtime };
    let db = this.#opened.get(placement.database);
    if (!db) {
      db = await openPostgres({
        url: databaseUrl(placement.database),
        maxConnections: 2,
        applicationName: 'tenantry-test',
      });
      this.#opened.set(placement.database, db);
    }
    return { owner: db.owner, runtime: db.runtime };
  }

  async owner(placement: TenantPlacement): Promise<ConnectionPool> {
    return (await this.of(placement)).owner;
  }

  async runtime(placement: TenantPlacement): Promise<ConnectionPool> {
    return (await this.of(placement)).runtime;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#opened.values()].map((db) => db.close()));
    this.#opened.clear();
  }
}

/** The settings the engine's transactions for `tenant` apply: the engine's own, not a copy. */
export async function settingsFor(env: TestEnv, tenant: TestTenant): Promise<TenantSettings> {
  return tenantSettings(await env.engine.store.get(tenant.id), env.config).settings;
}

/** The SQLSTATE a statement fails with, or undefined when it succeeds. */
export async function failureOf(work: Promise<unknown>): Promise<string | undefined> {
  try {
    await work;
    return undefined;
  } catch (error) {
    return sqlStateOf(error) ?? `not an SQL error: ${String(error)}`;
  }
}

/** `schema.table`, quoted. */
export function tableOf(placement: TenantPlacement, table: string): string {
  return `${quoteIdent(placement.schema)}.${quoteIdent(table)}`;
}

export async function countRows(
  db: Queryable,
  sql: string,
  params: readonly unknown[] = [],
): Promise<number> {
  const { rows } = await db.query<{ n: number | string }>(sql, params);
  return Number(rows[0]?.n ?? Number.NaN);
}

/** A Queryable that runs each statement in its own tenant transaction on `pool`. */
export function scoped(pool: ConnectionPool, settings: TenantSettings): Queryable {
  return { query: (sql, params) => pool.scopedQuery(settings, sql, params) };
}
