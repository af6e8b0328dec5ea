import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tenantryPlugin } from '../../src/fastify.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

describe.each(DRIVERS)('the library in a team’s own Fastify app on %s', (driver) => {
  let env: TestEnv;
  let app: FastifyInstance;
  let a: { id: string; key: string };
  let b: { id: string; key: string };

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    a = await env.createTenant('lib-a');
    b = await env.createTenant('lib-b', { isolation: 'schema' });
    for (const [tenant, name] of [
      [a, 'Alpha'],
      [b, 'Beta'],
    ] as const) {
      await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: { 'x-api-key': tenant.key },
        payload: { name },
      });
    }

    app = Fastify();
    await app.register(tenantryPlugin, { tenantry: env.tenantry });
    // A hand-written route: plain SQL, no tenant filter written by the team.
    await app.register(
      app.tenantScope((scope) => {
        scope.get('/project-names', async (request) => {
          const { rows } = await request.db.query<{ name: string }>(
            'SELECT name FROM projects ORDER BY name',
          );
          return { tenant: request.tenant?.slug, names: rows.map((row) => row.name) };
        });
      }),
    );
    app.get('/unscoped', async (request) => (await request.db.query('SELECT name FROM projects')).rows);
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await env?.close();
  });

  it('binds request.db to the resolved tenant, at any isolation level', async () => {
    const fromA = await app.inject({ url: '/project-names', headers: { 'x-api-key': a.key } });
    expect(fromA.json()).toEqual({ tenant: 'lib-a', names: ['Alpha'] });
    const fromB = await app.inject({
      url: '/project-names',
      headers: { host: 'lib-b.localhost', 'x-api-key': b.key },
    });
    expect(fromB.json()).toEqual({ tenant: 'lib-b', names: ['Beta'] });
  });

  it('needs credentials: a host names a tenant but is no secret', async () => {
    const hostOnly = await app.inject({ url: '/project-names', headers: { host: 'lib-b.localhost' } });
    expect(hostOnly.statusCode).toBe(401);
    expect(hostOnly.json().code).toBe('unauthenticated');
  });

  it('resolves and refuses like the server: no tenant, cross-tenant', async () => {
    expect((await app.inject({ url: '/project-names' })).json().code).toBe('tenant_required');
    const cross = await app.inject({
      url: '/project-names',
      headers: { host: 'lib-b.localhost', 'x-api-key': a.key },
    });
    expect(cross.statusCode).toBe(403);
    expect(cross.json().code).toBe('cross_tenant');
  });

  it('never runs a query without a tenant: request.db outside a tenant scope throws', async () => {
    const response = await app.inject({ url: '/unscoped', headers: { 'x-api-key': a.key } });
    expect(response.statusCode).toBe(401);
    expect(response.json().code).toBe('tenant_required');
  });

  it('withTenant runs jobs outside HTTP in the tenant’s transaction', async () => {
    const names = await env.tenantry.withTenant(
      b.id,
      async (db) => (await db.query<{ name: string }>('SELECT name FROM projects')).rows,
    );
    expect(names.map((row) => row.name)).toEqual(['Beta']);
    const count = await env.tenantry.withTenant(a.id, (db) =>
      db.transaction(async (tx) => {
        await tx.query("UPDATE projects SET status = 'archived'");
        return (
          await tx.query<{ n: number }>("SELECT count(*)::int AS n FROM projects WHERE status = 'archived'")
        ).rows[0]!.n;
      }),
    );
    expect(count).toBe(1);
    const bRows = await env.tenantry.withTenant(
      b.id,
      async (db) => (await db.query<{ status: string }>('SELECT status FROM projects')).rows,
    );
    expect(bRows).toEqual([{ status: 'active' }]);
    await expect(
      env.tenantry.withTenant('0190f5c2-6f3d-7a2b-8c4d-0123456789ab', async () => 1),
    ).rejects.toMatchObject({
      code: 'tenant_not_found',
    });
    // Not an id at all (a slug, garbage): the same answer, not a database error.
    for (const notAnId of ['acme', "x'; --", ''])
      await expect(env.tenantry.withTenant(notAnId, async () => 1)).rejects.toMatchObject({
        code: 'tenant_not_found',
      });
  });
});
