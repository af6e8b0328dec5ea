import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminTokenGuard } from '../../src/auth/admin-token.js';
import { defineConfig } from '../../src/config/load-config.js';
import { buildApp } from '../../src/http/app.js';
import { tenantDatabaseName } from '../../src/isolation/tenant-placement.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { runCli } from '../helpers/cli.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { ADMIN_TOKEN, DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { createDatabase, RUN_ID, withServer } from '../helpers/postgres.js';

const INSUFFICIENT_PRIVILEGE = '42501';

/** Control-plane tables tenant code must not read: secrets, other tenants' users and hosts, the audit trail. */
const CONTROL_PLANE_READS = [
  'SELECT key_id, salt, hash FROM tenantry.api_keys',
  'SELECT token_hash FROM tenantry.sessions',
  'SELECT email, tenant_id FROM tenantry.users',
  'SELECT name, permissions FROM tenantry.roles',
  'SELECT host, tenant_id FROM tenantry.tenant_hosts',
  'SELECT slug, config FROM tenantry.tenants',
  'SELECT action FROM tenantry.audit_log',
  'SELECT client_id, hash FROM tenantry.clients',
];

const codeOf = (work: Promise<unknown>) =>
  work.then(
    () => 'read',
    (error: unknown) => (error as { code?: string }).code ?? String(error),
  );

describe.each(DRIVERS)('tenant code and the control plane, on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
  });
  afterAll(async () => {
    await env?.close();
  });

  it.each(CONTROL_PLANE_READS)('a tenant handle cannot run %s', async (sql) => {
    const tenant = await env.createTenant(`cp-${CONTROL_PLANE_READS.indexOf(sql)}`);
    expect(await codeOf(env.tenantry.withTenant(tenant.slug, (db) => db.query(sql)))).toBe(
      INSUFFICIENT_PRIVILEGE,
    );
  });
});

/**
 * The recommended production set-up: `DATABASE_URL` logs in as a role that is a member of the
 * runtime role and nothing else, `DATABASE_ADMIN_URL` as the owner. Everything works, and tenant
 * code cannot leave its tenant even by resetting its role (it only gets back to the login).
 */
describe.runIf(DRIVERS.includes('postgres'))(
  'the runtime login and the owner as two connection strings',
  () => {
    for (const inherit of [true, false]) {
      describe(inherit ? 'a login that inherits the runtime role' : 'a NOINHERIT login', () => {
        const login = `tenantry_login_${inherit ? 'i' : 'n'}_${RUN_ID}`;
        let tenantry: Tenantry;
        let app: Awaited<ReturnType<typeof buildApp>>;
        let drop: () => Promise<void>;
        let key: string;
        let slug: string;

        beforeAll(async () => {
          const database = await createDatabase();
          drop = database.drop;
          const ownerUrl = database.url;
          // The owner prepares the database (control plane, the runtime role and its grants).
          const prepare = await Tenantry.open({
            config: defineConfig({
              adminToken: ADMIN_TOKEN,
              entities: EXAMPLE_ENTITIES,
              database: { url: ownerUrl },
            }),
            redis: false,
          });
          const role = prepare.config.database.runtimeRole;
          await prepare.close();
          await withServer(async (client) => {
            await client.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(login)}`);
            await client.query(
              `CREATE ROLE ${pg.escapeIdentifier(login)} LOGIN ${inherit ? 'INHERIT' : 'NOINHERIT'} IN ROLE ${pg.escapeIdentifier(role)}`,
            );
          });
          const runtimeUrl = new URL(ownerUrl);
          runtimeUrl.username = login;
          const config = defineConfig({
            adminToken: ADMIN_TOKEN,
            entities: EXAMPLE_ENTITIES,
            database: { url: runtimeUrl.toString(), adminUrl: ownerUrl },
          });
          tenantry = await Tenantry.open({ config, redis: false });
          const { guard } = await AdminTokenGuard.setUp(engineOf(tenantry).db.owner, config.adminToken);
          app = await buildApp({ tenantry, adminGuard: guard });
          slug = `split-${inherit ? 'i' : 'n'}`;
          const created = await app.inject({
            method: 'POST',
            url: '/admin/tenants',
            headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
            payload: { name: 'Split', slug, isolation: 'database' },
          });
          expect(created.statusCode, created.body).toBe(201);
          key = created.json().apiKey.key;
        });
        afterAll(async () => {
          const tenantId = (await tenantry?.tenants.show({ tenant: slug }).catch(() => undefined))?.id;
          await app?.close();
          await tenantry?.close();
          await withServer(async (client) => {
            if (tenantId)
              await client.query(
                `DROP DATABASE IF EXISTS ${pg.escapeIdentifier(tenantDatabaseName(tenantId))} WITH (FORCE)`,
              );
            const { rows } = await client.query<{ datname: string }>(
              "SELECT datname FROM pg_database WHERE datname LIKE 'tenantry_tpl_v%'",
            );
            for (const { datname } of rows)
              await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(datname)} WITH (FORCE)`);
          }).catch(() => undefined);
          await drop?.();
          await withServer((client) =>
            client.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(login)}`),
          ).catch(() => undefined);
        });

        it('serves tenants and keys, and the operator’s audit trail', async () => {
          const info = await app.inject({ url: '/tenant-info', headers: { 'x-api-key': key } });
          expect(info.statusCode, info.body).toBe(200);
          const project = await app.inject({
            method: 'POST',
            url: '/api/v1/projects',
            headers: { 'x-api-key': key, 'content-type': 'application/json' },
            payload: { name: 'Apollo' },
          });
          expect(project.statusCode, project.body).toBe(201);
          const audit = await app.inject({
            url: `/admin/audit?tenant=${slug}`,
            headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
          });
          expect(audit.statusCode, audit.body).toBe(200);
          expect(audit.json().entries.map((entry: { action: string }) => entry.action)).toContain(
            'tenant.create',
          );
        });

        it('tenant code cannot read the control plane, not even after resetting its role', async () => {
          for (const sql of CONTROL_PLANE_READS) {
            const direct = tenantry.withTenant(slug, (db) => db.query(sql));
            expect(await codeOf(direct), sql).toBe(INSUFFICIENT_PRIVILEGE);
          }
          const escaped = tenantry.withTenant(slug, (db) =>
            db.transaction(async (tx) => {
              await tx.query('RESET ROLE');
              return tx.query('SELECT key_id, hash FROM tenantry.api_keys');
            }),
          );
          expect(await codeOf(escaped)).not.toBe('read');
        });

        it('the tenant’s own database admits the runtime role, not PUBLIC, and nobody makes temporary tables there', async () => {
          const { id } = await tenantry.tenants.show({ tenant: slug });
          const database = tenantDatabaseName(id);
          await withServer(async (client) => {
            const stranger = `tenantry_stranger_${RUN_ID}`;
            await client.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(stranger)}`);
            await client.query(`CREATE ROLE ${pg.escapeIdentifier(stranger)} LOGIN`);
            try {
              const { rows } = await client.query<{ stranger: boolean; runtime: boolean; temp: boolean }>(
                `SELECT has_database_privilege($1, $3, 'CONNECT') AS stranger,
                      has_database_privilege($2, $3, 'CONNECT') AS runtime,
                      has_database_privilege($2, $3, 'TEMPORARY') AS temp`,
                [stranger, tenantry.config.database.runtimeRole, database],
              );
              expect(rows[0]).toEqual({ stranger: false, runtime: true, temp: false });
            } finally {
              await client.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(stranger)}`);
            }
          });
        });
      });
    }
  },
);

describe.runIf(DRIVERS.includes('postgres'))('tenantry init-db --runtime-login and tenantry doctor', () => {
  const login = `tenantry_app_${RUN_ID}`;
  let ownerUrl: string;
  let runtimeUrl: string;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    const database = await createDatabase();
    drop = database.drop;
    ownerUrl = database.url;
    const url = new URL(ownerUrl);
    url.username = login;
    runtimeUrl = url.toString();
  });
  afterAll(async () => {
    await drop?.();
    await withServer((client) => client.query(`DROP ROLE IF EXISTS ${pg.escapeIdentifier(login)}`)).catch(
      () => undefined,
    );
  });

  const env = (databaseUrl: string, adminUrl?: string) => ({
    DATABASE_URL: databaseUrl,
    ...(adminUrl ? { DATABASE_ADMIN_URL: adminUrl } : {}),
    TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
  });

  it('creates the runtime login; with it as DATABASE_URL the deployment passes; with the owner it fails, naming the fix', async () => {
    const created = await runCli(
      ['init-db', '--runtime-login', login, '--password-stdin'],
      env(ownerUrl),
      'a-long-password-0123\n',
    );
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toContain(`runtime login ${login} created`);
    const { rows } = await withServer((client) =>
      client.query<{ login: boolean; member: boolean; password: boolean }>(
        `SELECT rolcanlogin AS login, pg_has_role($1, 'tenantry_runtime', 'MEMBER') AS member, rolpassword IS NOT NULL AS password
           FROM pg_authid WHERE rolname = $1`,
        [login],
      ),
    );
    expect(rows[0]).toEqual({ login: true, member: true, password: true });

    const split = await runCli(['doctor', '--json'], env(runtimeUrl, ownerUrl));
    expect(split.code, split.stdout + split.stderr).toBe(0);
    const checks = JSON.parse(split.stdout).checks as { name: string; status: string }[];
    expect(checks.find((check) => check.name === 'runtime login')?.status).toBe('ok');
    expect(checks.find((check) => check.name === 'runtime role')?.status).toBe('ok');

    const single = await runCli(['doctor'], env(ownerUrl));
    expect(single.code).toBe(1);
    expect(single.stdout).toMatch(/FAIL {2}runtime login: DATABASE_URL logs in as postgres/);
    expect(single.stdout).toContain('fix: CREATE ROLE');
  });
});
