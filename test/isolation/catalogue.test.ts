import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Queryable } from '../../src/db/database.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { createTestTenant, LEVELS, Places, type TestTenant } from '../helpers/isolation.js';

type TableInfo = {
  readonly schema: string;
  readonly table: string;
  readonly rls: boolean;
  readonly forced: boolean;
};

type PolicyInfo = {
  readonly schema: string;
  readonly table: string;
  readonly name: string;
  readonly permissive: string;
  readonly roles: string[] | string;
  readonly cmd: string;
  readonly qual: string | null;
  readonly check: string | null;
};

type GrantInfo = {
  readonly schema: string;
  readonly table: string;
  readonly grantee: string;
  readonly privilege: string;
};

/** The tenant predicate as PostgreSQL prints it back: the column compared with the setting. */
const PREDICATE = /tenant_id = .*current_setting\('tenantry\.tenant_id'/;

const tenantTables = (db: Queryable, schemaFilter: string) =>
  db.query<TableInfo>(
    `SELECT n.nspname AS schema, c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND (${schemaFilter})
      ORDER BY 1, 2`,
  );

const policies = (db: Queryable, schemaFilter: string) =>
  db.query<PolicyInfo>(
    `SELECT schemaname AS schema, tablename AS table, policyname AS name, permissive, roles::text[] AS roles,
            cmd, qual, with_check AS check
       FROM pg_policies p JOIN pg_namespace n ON n.nspname = p.schemaname WHERE ${schemaFilter}`,
  );

/** Every privilege anyone granted on the tables, expanded from the ACLs (grantee 0 is PUBLIC). */
const grants = (db: Queryable, schemaFilter: string) =>
  db.query<GrantInfo>(
    `SELECT n.nspname AS schema, c.relname AS table,
            coalesce(r.rolname, 'PUBLIC') AS grantee, a.privilege_type AS privilege
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       CROSS JOIN LATERAL aclexplode(c.relacl) a
       LEFT JOIN pg_roles r ON r.oid = a.grantee
      WHERE c.relkind IN ('r', 'p') AND (${schemaFilter})`,
  );

const MAIN_SCHEMAS = `n.nspname = 'app' OR n.nspname LIKE 't\\_%'`;

/**
 * The catalogue itself says every tenant table is protected: RLS enabled and forced, a
 * permissive and a restrictive tenant policy on every command, and the runtime role may not
 * TRUNCATE (which RLS does not cover) nor create objects it would own.
 */
describe.each(DRIVERS)('catalogue of tenant tables on %s', (driver) => {
  let env: TestEnv;
  let places: Places;
  let role: string;
  const tenants = new Map<IsolationLevel, TestTenant>();
  /** Databases to inspect: the env's own (app + t_* schemas), and each database tenant's (app). */
  const targets: { name: string; db: () => Promise<Queryable>; filter: string; schemas: string[] }[] = [];

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    places = new Places(env);
    role = env.config.database.runtimeRole;
    for (const level of LEVELS[driver]) {
      tenants.set(level, await createTestTenant(env, `catalogue-${level}`, level));
    }
    const schemaTenant = tenants.get('schema')!;
    targets.push({
      name: 'main database',
      db: async () => env.engine.db.owner,
      filter: MAIN_SCHEMAS,
      schemas: ['app', schemaTenant.placement.schema],
    });
    const databaseTenant = tenants.get('database');
    if (databaseTenant) {
      targets.push({
        name: `database ${databaseTenant.placement.database}`,
        db: () => places.owner(databaseTenant.placement),
        filter: `n.nspname = 'app'`,
        schemas: ['app'],
      });
    }
  });
  afterAll(async () => {
    await places?.close();
    await env?.close();
  });

  it('finds the tables it is about (app, every t_* schema, every tenant database)', async () => {
    for (const target of targets) {
      const { rows } = await tenantTables(await target.db(), target.filter);
      for (const schema of target.schemas) {
        expect(
          rows.filter((row) => row.schema === schema).map((row) => row.table),
          `${target.name} ${schema}`,
        ).toEqual(['projects', 'tasks']);
      }
    }
  });

  it('enables and forces row-level security on every tenant table', async () => {
    for (const target of targets) {
      const { rows } = await tenantTables(await target.db(), target.filter);
      expect(rows.length).toBeGreaterThan(0);
      const unprotected = rows.filter((row) => !row.rls || !row.forced);
      expect(unprotected, target.name).toEqual([]);
    }
  });

  it('has a permissive and a restrictive policy on the tenant id for every command of every table', async () => {
    for (const target of targets) {
      const db = await target.db();
      const tables = (await tenantTables(db, target.filter)).rows;
      const all = (await policies(db, target.filter)).rows;
      for (const table of tables) {
        const label = `${target.name} ${table.schema}.${table.table}`;
        const own = all.filter((policy) => policy.schema === table.schema && policy.table === table.table);
        for (const kind of ['PERMISSIVE', 'RESTRICTIVE']) {
          const covering = own.filter(
            (policy) =>
              policy.permissive === kind &&
              policy.cmd === 'ALL' &&
              rolesOf(policy).some((name) => name === 'public' || name === role) &&
              PREDICATE.test(policy.qual ?? '') &&
              PREDICATE.test(policy.check ?? ''),
          );
          expect(covering.length, `${label}: ${kind} tenant policy`).toBeGreaterThan(0);
        }
        // No policy may ignore the tenant (a restrictive one would still bound it, but say so).
        for (const policy of own) {
          expect(PREDICATE.test(policy.qual ?? ''), `${label} policy ${policy.name} USING`).toBe(true);
          if (policy.cmd !== 'SELECT' && policy.cmd !== 'DELETE') {
            expect(
              PREDICATE.test(policy.check ?? policy.qual ?? ''),
              `${label} policy ${policy.name} CHECK`,
            ).toBe(true);
          }
        }
      }
    }
  });

  it('never grants TRUNCATE (or more than SELECT, INSERT, UPDATE, DELETE) to the runtime role or PUBLIC', async () => {
    for (const target of targets) {
      const db = await target.db();
      const { rows } = await grants(db, target.filter);
      const runtimeGrants = rows.filter((grant) => grant.grantee === role || grant.grantee === 'PUBLIC');
      expect(
        runtimeGrants.filter((grant) => grant.privilege === 'TRUNCATE'),
        target.name,
      ).toEqual([]);
      const tables = (await tenantTables(db, target.filter)).rows;
      for (const table of tables) {
        const privileges = runtimeGrants
          .filter((grant) => grant.schema === table.schema && grant.table === table.table)
          .map((grant) => grant.privilege)
          .sort();
        expect(privileges, `${target.name} ${table.schema}.${table.table}`).toEqual([
          'DELETE',
          'INSERT',
          'SELECT',
          'UPDATE',
        ]);
      }
      // Effective privileges too (through PUBLIC or role membership).
      const effective = await db.query<{ schema: string; table: string }>(
        `SELECT n.nspname AS schema, c.relname AS table
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p') AND (${target.filter}) AND has_table_privilege($1, c.oid, 'TRUNCATE')`,
        [role],
      );
      expect(effective.rows, target.name).toEqual([]);
    }
  });

  it('lets the runtime role create nothing in the tenant or shared schemas', async () => {
    for (const target of targets) {
      const db = await target.db();
      const { rows } = await db.query<{ schema: string }>(
        `SELECT n.nspname AS schema FROM pg_namespace n
          WHERE (${target.filter} OR n.nspname IN ('shared', 'public')) AND has_schema_privilege($1, n.oid, 'CREATE')`,
        [role],
      );
      expect(rows, target.name).toEqual([]);
    }
  });
});

function rolesOf(policy: PolicyInfo): string[] {
  // pg returns text[] as an array; PGlite may hand back the literal.
  if (Array.isArray(policy.roles)) return policy.roles;
  return policy.roles.replace(/^\{|\}$/g, '').split(',');
}
