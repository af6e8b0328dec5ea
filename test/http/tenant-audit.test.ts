import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

describe.each(DRIVERS)('a tenant’s own audit trail (GET /api/v1/audit), on %s', (driver) => {
  let env: TestEnv;
  let a: { id: string; slug: string; key: string };
  let b: { id: string; slug: string; key: string };
  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    a = await env.createTenant('audit-a');
    b = await env.createTenant('audit-b');
    await env.admin('PATCH', '/admin/tenants/audit-a', { name: 'Audit A renamed' });
    await env.admin('PATCH', '/admin/tenants/audit-b', { name: 'Audit B renamed' });
  });
  afterAll(async () => {
    await env?.close();
  });

  const audit = (key: string, query = '') =>
    env.inject({ url: `/api/v1/audit${query}`, headers: { 'x-api-key': key } });

  it('shows the tenant’s entries and no other tenant’s, with the admin route’s filters', async () => {
    const own = await audit(a.key);
    expect(own.statusCode, own.body).toBe(200);
    const entries = own.json().entries as { tenantId: string; action: string }[];
    expect(entries.map((entry) => entry.action)).toEqual(
      expect.arrayContaining(['tenant.create', 'tenant.update']),
    );
    expect(entries.every((entry) => entry.tenantId === a.id)).toBe(true);
    expect(own.body).not.toContain(b.id);
    const filtered = (await audit(a.key, '?action=tenant.update&limit=1')).json();
    expect(filtered.entries).toHaveLength(1);
    expect(filtered.entries[0]).toMatchObject({ action: 'tenant.update', tenantId: a.id });
  });

  it('cannot be pointed at another tenant', async () => {
    const other = await audit(a.key, `?tenant=${b.slug}`);
    expect(other.statusCode).toBe(400);
    expect(other.body).not.toContain(b.id);
  });

  it('needs audit:read', async () => {
    const narrow = await env.admin('POST', `/admin/tenants/${a.slug}/api-keys`, {
      permissions: ['projects:read'],
    });
    const refused = await audit(narrow.json().key);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'forbidden' });
    expect(
      (await env.inject({ url: '/api/v1/audit', headers: { host: 'audit-a.localhost' } })).statusCode,
    ).toBe(401);
  });
});
