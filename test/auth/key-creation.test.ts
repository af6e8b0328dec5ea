import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

/**
 * An operator's key (admin API, CLI, library) and a tenant actor's key (`/api/v1/keys`) are one
 * operation: the same checks, the same delegation rule, the same audit entry. The library path
 * used to skip the permission check.
 */
describe.each(DRIVERS)('one way to create an API key, on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
  });
  afterAll(async () => {
    await env?.close();
  });

  const asKey = (key: string) => ({ 'x-api-key': key, 'content-type': 'application/json' });

  it('refuses a permission that does not exist, from the admin API, the library and a tenant actor alike', async () => {
    const tenant = await env.createTenant('one-path-unknown');
    const body = { name: 'odd', permissions: ['projects:read', 'rockets:launch'] };
    const expected = { code: 'validation_failed', field: 'permissions' };
    const admin = await env.admin('POST', `/admin/tenants/${tenant.slug}/api-keys`, body);
    expect(admin.statusCode).toBe(400);
    expect(admin.json()).toMatchObject(expected);
    await expect(env.tenantry.keys.create({ tenant: tenant.slug, ...body })).rejects.toMatchObject(expected);
    const own = await env.inject({
      method: 'POST',
      url: '/api/v1/keys',
      headers: asKey(tenant.key),
      payload: body,
    });
    expect(own.statusCode).toBe(400);
    expect(own.json()).toMatchObject(expected);
    const keys = (await env.admin('GET', `/admin/tenants/${tenant.slug}/keys`)).json().keys;
    expect(keys).toHaveLength(1);
  });

  it('a key made by a narrow key holds at most what its maker holds; an operator’s, every permission', async () => {
    const tenant = await env.createTenant('one-path-scope');
    const narrow = await env.tenantry.keys.create({
      tenant: tenant.slug,
      name: 'narrow',
      permissions: ['keys:manage', 'projects:read'],
    });
    expect(narrow.permissions).toEqual(['keys:manage', 'projects:read']);
    const wider = await env.inject({
      method: 'POST',
      url: '/api/v1/keys',
      headers: asKey(narrow.key),
      payload: { permissions: ['projects:create'] },
    });
    expect(wider.statusCode).toBe(403);
    expect(wider.json().code).toBe('forbidden');
    const same = await env.inject({
      method: 'POST',
      url: '/api/v1/keys',
      headers: asKey(narrow.key),
      payload: {},
    });
    expect(same.statusCode, same.body).toBe(201);
    expect(same.json().permissions).toEqual(['keys:manage', 'projects:read']);
    const operator = await env.tenantry.keys.create({ tenant: tenant.slug, name: 'operator' });
    expect(operator.permissions).toBeNull();
  });

  it('every path writes the same audit entry', async () => {
    const tenant = await env.createTenant('one-path-audit');
    await env.admin('POST', `/admin/tenants/${tenant.slug}/api-keys`, { name: 'admin' });
    await env.tenantry.keys.create({ tenant: tenant.slug, name: 'library' });
    await env.inject({
      method: 'POST',
      url: '/api/v1/keys',
      headers: asKey(tenant.key),
      payload: { name: 'own' },
    });
    const entries = (await env.tenantry.audit.list({ tenant: tenant.slug, action: 'tenant.key.create' }))
      .entries;
    expect(entries).toHaveLength(3);
    expect(entries.map((entry) => entry.actor)).toEqual(
      expect.arrayContaining(['admin-token:admin', 'system:library', expect.stringMatching(/^api-key:/)]),
    );
    expect(entries.every((entry) => entry.outcome === 'success' && entry.tenantId === tenant.id)).toBe(true);
  });
});
