import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

describe.each(DRIVERS)('admin API for fleet operations, on %s', (driver) => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
  });
  afterAll(async () => {
    await env.close();
  });

  it('every fleet route needs the admin token', async () => {
    for (const [method, url] of [
      ['GET', '/admin/servers'],
      ['POST', '/admin/servers'],
      ['DELETE', '/admin/servers/main'],
      ['PUT', '/admin/servers/main'],
      ['GET', '/admin/migrations/plan'],
      ['POST', '/admin/tenants/whoever/repair'],
      ['DELETE', '/admin/tenants/whoever?purge=true'],
    ] as const) {
      const response = await env.inject({ method, url });
      expect(response.statusCode, `${method} ${url}`).toBe(401);
    }
  });

  it('DELETE ?purge=true removes the tenant for good; a bad purge value changes nothing', async () => {
    const tenant = await env.createTenant('purge-me', { isolation: 'schema' });
    const bad = await env.admin('DELETE', `/admin/tenants/${tenant.id}?purge=yes`);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('validation_failed');
    expect((await env.admin('GET', `/admin/tenants/${tenant.id}`)).statusCode).toBe(200);

    const purged = await env.admin('DELETE', `/admin/tenants/${tenant.id}?purge=true`);
    expect(purged.statusCode, purged.body).toBe(200);
    const gone = await env.admin('GET', `/admin/tenants/${tenant.id}?includeDeleted=true`);
    expect(gone.statusCode).toBe(404);
    const key = await env.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } });
    expect(key.statusCode).toBe(401);
  });

  it('a soft-deleted tenant is purged by the slug it had; several such tenants must be named by id', async () => {
    const first = await env.createTenant('purge-by-slug', { isolation: 'schema' });
    expect((await env.admin('DELETE', `/admin/tenants/${first.slug}`)).statusCode).toBe(200);
    const purged = await env.admin('DELETE', `/admin/tenants/${first.slug}?purge=true`);
    expect(purged.statusCode, purged.body).toBe(200);
    expect(purged.json().id).toBe(first.id);
    expect((await env.admin('GET', `/admin/tenants/${first.id}?includeDeleted=true`)).statusCode).toBe(404);

    // Two deleted tenants had the slug: which one is meant is not guessed, and nothing is purged.
    const older = await env.createTenant('purge-twice');
    expect((await env.admin('DELETE', `/admin/tenants/${older.slug}`)).statusCode).toBe(200);
    const newer = await env.createTenant('purge-twice');
    expect((await env.admin('DELETE', `/admin/tenants/${newer.slug}`)).statusCode).toBe(200);
    const ambiguous = await env.admin('DELETE', '/admin/tenants/purge-twice?purge=true');
    expect(ambiguous.statusCode, ambiguous.body).toBe(409);
    expect(ambiguous.json()).toMatchObject({ code: 'conflict', detail: expect.stringMatching(/by its id/) });
    for (const tenant of [older, newer]) {
      expect((await env.admin('GET', `/admin/tenants/${tenant.id}?includeDeleted=true`)).statusCode).toBe(
        200,
      );
    }
    // A live tenant holding the slug is the one a purge by slug names, as before.
    const live = await env.createTenant('purge-twice');
    const purgedLive = await env.admin('DELETE', '/admin/tenants/purge-twice?purge=true');
    expect(purgedLive.statusCode, purgedLive.body).toBe(200);
    expect(purgedLive.json().id).toBe(live.id);
    expect((await env.admin('DELETE', '/admin/tenants/never-was?purge=true')).statusCode).toBe(404);
  });

  it('POST repair checks a live tenant against its entity version', async () => {
    const tenant = await env.createTenant('check-me', { isolation: 'schema' });
    const repaired = await env.admin('POST', `/admin/tenants/${tenant.slug}/repair`);
    expect(repaired.statusCode, repaired.body).toBe(200);
    expect(repaired.json()).toMatchObject({
      action: 'checked',
      differences: [],
      tenant: { schemaVersion: 1 },
    });
    const missing = await env.admin('POST', '/admin/tenants/no-such-tenant/repair');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('tenant_not_found');
  });

  it('lists the main server, and refuses servers that cannot be used', async () => {
    const list = await env.admin('GET', '/admin/servers');
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual([expect.objectContaining({ name: 'main' })]);
    // Its address: the control plane's URL without the password, or "embedded" on PGlite.
    expect(list.json()[0].url).toMatch(driver === 'pglite' ? /^embedded$/ : /^postgres(ql)?:\/\//);
    const refused = await env.admin('POST', '/admin/servers', {
      name: 'other',
      url: 'postgres://postgres@127.0.0.1:1/postgres',
    });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().code).toBe('validation_failed');
    const unknownField = await env.admin('POST', '/admin/servers', {
      name: 'x',
      url: 'postgres://h/d',
      extra: 1,
    });
    expect(unknownField.statusCode).toBe(400);
    const main = await env.admin('DELETE', '/admin/servers/main');
    expect(main.statusCode).toBe(409);
    const none = await env.admin('DELETE', '/admin/servers/none');
    expect(none.statusCode).toBe(404);
    const url = 'postgres://postgres@127.0.0.1:5432/postgres';
    expect((await env.admin('PUT', '/admin/servers/none', { url })).statusCode).toBe(404);
    expect((await env.admin('PUT', '/admin/servers/main', { url })).statusCode).toBe(400);
    expect((await env.admin('PUT', '/admin/servers/none', { url: 42 })).statusCode).toBe(400);
    expect((await env.admin('GET', '/admin/servers')).json()).toHaveLength(1);
  });

  it('shows an empty migration plan when every tenant is current', async () => {
    const plan = await env.admin('GET', '/admin/migrations/plan');
    expect(plan.statusCode).toBe(200);
    expect(plan.json()).toMatchObject({ targetVersion: 1, newVersion: false, plans: [], problems: [] });
  });
});
