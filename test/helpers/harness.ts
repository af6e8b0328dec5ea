import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { AdminTokenGuard } from '../../src/auth/admin-token.js';
import type { TenantryConfig } from '../../src/config/config-schema.js';
import { defineConfig } from '../../src/config/load-config.js';
import { openPglite } from '../../src/db/pglite-driver.js';
import type { Engine } from '../../src/engine/engine.js';
import { buildApp } from '../../src/http/app.js';
import { tenantDatabaseName } from '../../src/isolation/tenant-placement.js';
import type { EngineLogger } from '../../src/runtime/engine-logger.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { createDatabase, postgresAvailable, withServer } from './postgres.js';

export type TestDriver = 'pglite' | 'postgres';

/** Every suite that touches a database runs on both; PostgreSQL is mandatory in CI (see IN_CI). */
export const DRIVERS: readonly TestDriver[] = (await postgresAvailable())
  ? ['pglite', 'postgres']
  : ['pglite'];

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdefghij';

type ConfigOverrides = Parameters<typeof defineConfig>[0];

export interface TestEnv {
  readonly driver: TestDriver;
  readonly tenantry: Tenantry;
  /** The engine behind it: the components the tests look into (pools, caches, limiters). */
  readonly engine: Engine;
  readonly app: FastifyInstance;
  readonly config: TenantryConfig;
  /** The PostgreSQL URL of this env's own database (postgres driver only). */
  readonly databaseUrl: string | undefined;
  inject(options: InjectOptions): Promise<LightMyRequestResponse>;
  admin(method: InjectOptions['method'], url: string, body?: unknown): Promise<LightMyRequestResponse>;
  createTenant(
    slug: string,
    extra?: Record<string, unknown>,
  ): Promise<{ id: string; slug: string; key: string }>;
  close(): Promise<void>;
}

export async function startTestEnv(
  driver: TestDriver,
  overrides: ConfigOverrides = {},
  options: { logger?: EngineLogger; storageMeasureIntervalMs?: number } = {},
): Promise<TestEnv> {
  const database = driver === 'postgres' ? await createDatabase() : undefined;
  const config = defineConfig({
    ...overrides,
    adminToken: ADMIN_TOKEN,
    database: { ...(overrides.database ?? {}), ...(database ? { url: database.url } : {}) },
  });
  const logger = {
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.storageMeasureIntervalMs === undefined
      ? {}
      : { storageMeasureIntervalMs: options.storageMeasureIntervalMs }),
  };
  const tenantry = await Tenantry.open(
    driver === 'pglite' ? { config, database: await openPglite(), ...logger } : { config, ...logger },
  );
  const engine = engineOf(tenantry);
  const { guard } = await AdminTokenGuard.setUp(engine.db.owner, config.adminToken);
  const app = await buildApp({ tenantry, adminGuard: guard });
  const inject = (options: InjectOptions) => app.inject(options);
  const admin = (method: InjectOptions['method'], url: string, body?: unknown) =>
    app.inject({
      method,
      url,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      ...(body === undefined ? {} : { payload: body as InjectOptions['payload'] }),
    });
  return {
    driver,
    tenantry,
    engine,
    app,
    config,
    databaseUrl: database?.url,
    inject,
    admin,
    async createTenant(slug, extra = {}) {
      const response = await admin('POST', '/admin/tenants', { name: `Tenant ${slug}`, slug, ...extra });
      if (response.statusCode !== 201)
        throw new Error(`create ${slug}: ${response.statusCode} ${response.body}`);
      const body = response.json() as { tenant: { id: string; slug: string }; apiKey: { key: string } };
      return { id: body.tenant.id, slug: body.tenant.slug, key: body.apiKey.key };
    },
    async close() {
      await app.close();
      // Database tenants have databases of their own on the server: remove them with the test's.
      const tenantDatabases =
        driver === 'postgres'
          ? [
              ...(
                await engine.db.owner.query<{ id: string }>(
                  "SELECT id FROM tenantry.tenants WHERE isolation = 'database'",
                )
              ).rows.map((row) => tenantDatabaseName(row.id)),
              // Templates that new database tenants were copied from.
              ...(
                await engine.db.owner.query<{ name: string }>('SELECT name FROM tenantry.database_templates')
              ).rows.map((row) => row.name),
            ]
          : [];
      await tenantry.close();
      if (driver === 'pglite') await engine.db.close();
      if (tenantDatabases.length > 0) {
        await withServer(async (client) => {
          for (const name of tenantDatabases)
            await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
        });
      }
      await database?.drop();
    },
  };
}
