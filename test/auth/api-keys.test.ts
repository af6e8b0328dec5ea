import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { holdWrites } from '../helpers/hold-writes.js';

interface KeyInfo {
  keyId: string;
  name: string;
  revokedAt: string | null;
  expiresAt: string | null;
}

describe.each(DRIVERS)('further API keys of a tenant, on %s', (driver) => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      plans: { two: { limits: { maxApiKeys: 2 } }, three: { limits: { maxApiKeys: 3 } } },
    });
  });
  afterAll(async () => {
    await env.close();
  });

  const info = (key: string) => env.inject({ url: '/tenant-info', headers: { 'x-api-key': key } });
  const createKey = (slug: string, body?: unknown) =>
    env.admin('POST', `/admin/tenants/${slug}/api-keys`, body);
  const keysOf = async (slug: string): Promise<KeyInfo[]> =>
    (await env.admin('GET', `/admin/tenants/${slug}/keys?includeRevoked=true`)).json().keys;

  it('issues further named keys, shown once; every live key authenticates', async () => {
    const tenant = await env.createTenant('keys-many');
    const created = await createKey(tenant.slug, { name: 'ci pipeline' });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.headers['content-type']).toMatch(/application\/json/);
    const issued = created.json();
    expect(issued).toMatchObject({ name: 'ci pipeline', expiresAt: null });
    expect(issued.key).toMatch(/^tny_[0-9a-f]{16}_/);
    expect(issued.warning).toMatch(/shown only once/);

    expect((await info(issued.key)).json().slug).toBe(tenant.slug);
    expect((await info(tenant.key)).statusCode).toBe(200);

    // Operators only: a tenant's own key cannot issue keys.
    const byTenant = await env.inject({
      method: 'POST',
      url: `/admin/tenants/${tenant.id}/api-keys`,
      headers: { 'x-api-key': tenant.key },
    });
    expect(byTenant.statusCode).toBe(401);
    const noBody = await createKey(tenant.id);
    expect(noBody.statusCode, noBody.body).toBe(201);
    expect(noBody.json().name).toBe('unnamed');

    const keys = await keysOf(tenant.slug);
    expect(keys.map((key) => key.name)).toEqual(['default', 'ci pipeline', 'unnamed']);
    const listing = (await env.admin('GET', `/admin/tenants/${tenant.slug}/keys`)).body;
    expect(listing).not.toContain(issued.key.slice(-43));
  });

  it('revokes one key at once; the others keep working; revoking it again changes nothing', async () => {
    const tenant = await env.createTenant('keys-revoke');
    const second = (await createKey(tenant.slug, { name: 'temporary' })).json();
    // Verified once: the verification is now cached in this process.
    expect((await info(second.key)).statusCode).toBe(200);
    expect((await info(second.key)).statusCode).toBe(200);

    const revoked = await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/${second.keyId}`);
    expect(revoked.statusCode, revoked.body).toBe(200);
    expect(revoked.json()).toMatchObject({ keyId: second.keyId, name: 'temporary' });
    expect(revoked.json().revokedAt).not.toBeNull();
    expect((await info(second.key)).statusCode).toBe(401);
    expect((await info(tenant.key)).statusCode).toBe(200);

    const again = await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/${second.keyId}`);
    expect(again.statusCode).toBe(200);
    expect(again.json().revokedAt).toBe(revoked.json().revokedAt);

    const audit = (await env.admin('GET', `/admin/audit?tenant=${tenant.slug}`)).json().entries;
    expect(audit.map((entry: { action: string }) => entry.action)).toEqual(
      expect.arrayContaining(['tenant.key.create', 'tenant.key.revoke']),
    );
  });

  it.runIf(driver === 'postgres')('a revocation reaches another process through the change bus', async () => {
    const tenant = await env.createTenant('keys-elsewhere');
    const second = (await createKey(tenant.slug, { name: 'elsewhere' })).json();
    const other = await Tenantry.open({ config: env.config, redis: false });
    try {
      expect(await engineOf(other).apiKeys.verify(second.key)).toMatchObject({ tenantId: tenant.id });
      expect(engineOf(other).apiKeys.verifyCached(second.key)).toBeDefined();
      await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/${second.keyId}`);
      const started = Date.now();
      while (engineOf(other).apiKeys.verifyCached(second.key) && Date.now() - started < 20_000)
        await sleep(20);
      expect(engineOf(other).apiKeys.verifyCached(second.key)).toBeUndefined();
      expect(await engineOf(other).apiKeys.verify(second.key)).toBeUndefined();
      expect(await engineOf(other).apiKeys.verify(tenant.key)).toMatchObject({ tenantId: tenant.id });
    } finally {
      await other.close();
    }
  });

  it('refuses bad input with a problem and writes nothing', async () => {
    const tenant = await env.createTenant('keys-bad');
    const other = await env.createTenant('keys-other');
    const past = new Date(Date.now() - 60_000).toISOString();
    const cases: [unknown, string][] = [
      [{ name: '' }, 'name'],
      [{ name: '   ' }, 'name'],
      [{ name: 'tab\there' }, 'name'],
      [{ expiresAt: 'tomorrow' }, 'expiresAt'],
      [{ expiresAt: past }, 'expiresAt'],
      [{ expiresAt: '2999-01-01T10:00' }, 'expiresAt'],
      [{ expiresAt: '2999-02-30T10:00:00Z' }, 'expiresAt'],
      [{ scope: 'all' }, 'scope'],
      [[], ''],
    ];
    for (const [body, field] of cases) {
      const response = await createKey(tenant.slug, body);
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
      expect(response.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(response.json().code).toBe('validation_failed');
      if (field) expect(response.json().field).toContain(field);
    }
    expect((await createKey('no-such-tenant', { name: 'x' })).json().code).toBe('tenant_not_found');

    const badId = await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/not-a-key`);
    expect(badId.statusCode).toBe(400);
    expect(badId.json()).toMatchObject({ code: 'validation_failed', field: 'keyId' });
    const unknown = await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/0123456789abcdef`);
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: 'not_found', field: 'keyId' });
    // Another tenant's key cannot be revoked through this tenant.
    const otherKeyId = (await keysOf(other.slug))[0]!.keyId;
    const foreign = await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/${otherKeyId}`);
    expect(foreign.statusCode).toBe(404);
    expect((await info(other.key)).statusCode).toBe(200);

    expect(await keysOf(tenant.slug)).toHaveLength(1);
    expect((await keysOf(other.slug))[0]!.revokedAt).toBeNull();
  });

  it('an expired key does not authenticate, whether or not it was verified before', async () => {
    const tenant = await env.createTenant('keys-expire');
    const expiresAt = new Date(Date.now() + 1500).toISOString();
    const used = (await createKey(tenant.slug, { name: 'used', expiresAt })).json();
    const unused = (await createKey(tenant.slug, { name: 'unused', expiresAt })).json();
    expect(used.expiresAt).toBe(expiresAt);
    expect((await info(used.key)).statusCode).toBe(200);
    expect((await info(used.key)).statusCode).toBe(200);

    await sleep(Date.parse(expiresAt) - Date.now() + 100);
    expect((await info(used.key)).statusCode).toBe(401);
    expect((await info(unused.key)).statusCode).toBe(401);
    expect((await info(tenant.key)).statusCode).toBe(200);
    const keys = await keysOf(tenant.slug);
    expect(keys.find((key) => key.name === 'used')?.expiresAt).toBe(expiresAt);
  });

  it('maxApiKeys: refused at the limit naming the quota, nothing written; revoked and expired keys do not count', async () => {
    const tenant = await env.createTenant('keys-quota', { plan: 'two' });
    const soon = new Date(Date.now() + 1500).toISOString();
    const expiring = await createKey(tenant.slug, { name: 'expiring', expiresAt: soon });
    expect(expiring.statusCode).toBe(201);

    const refused = await createKey(tenant.slug, { name: 'third' });
    expect(refused.statusCode).toBe(403);
    expect(refused.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(refused.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxApiKeys' });
    expect(refused.json().detail).toContain('maxApiKeys');
    expect((await keysOf(tenant.slug)).map((key) => key.name)).toEqual(['default', 'expiring']);

    // The expired key no longer counts.
    await sleep(Date.parse(soon) - Date.now() + 100);
    const afterExpiry = (await createKey(tenant.slug, { name: 'after-expiry' })).json();
    expect(afterExpiry.keyId).toBeDefined();
    expect((await createKey(tenant.slug, { name: 'over' })).statusCode).toBe(403);

    // Nor does a revoked one.
    await env.admin('DELETE', `/admin/tenants/${tenant.slug}/api-keys/${afterExpiry.keyId}`);
    expect((await createKey(tenant.slug, { name: 'after-revoke' })).statusCode).toBe(201);

    // An override raises the plan's limit.
    await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, { set: { 'limits.maxApiKeys': 3 } });
    expect((await createKey(tenant.slug, { name: 'raised' })).statusCode).toBe(201);
    expect((await createKey(tenant.slug, { name: 'over again' })).statusCode).toBe(403);

    const usage = (await env.admin('GET', `/admin/tenants/${tenant.slug}/usage`)).json();
    expect(usage.apiKeys).toEqual({ live: 3 });
    expect(usage.limits).toEqual({ maxApiKeys: 3 });
    const metrics = (await env.admin('GET', '/metrics')).body;
    expect(metrics).toContain('tenantry_quota_refused_total{tenant="keys-quota",quota="maxApiKeys"} 3');
  });

  it('concurrent creations never pass maxApiKeys together', async () => {
    const tenant = await env.createTenant('keys-race', { plan: 'three' });
    const creations = 6;
    // On PostgreSQL every creation is held at its insert until all of them have counted or wait
    // for their turn: without the tenant's lock they would all count one key and all insert.
    const held =
      driver === 'postgres' ? await holdWrites(env.databaseUrl!, ['tenantry.api_keys']) : undefined;
    const creating = Promise.all(
      Array.from({ length: creations }, (_, index) => createKey(tenant.slug, { name: `race-${index}` })),
    );
    await held?.releaseWhen((waiting) => waiting >= creations);
    const results = await creating;
    expect(results.filter((response) => response.statusCode === 201)).toHaveLength(2);
    expect(results.filter((response) => response.statusCode === 403)).toHaveLength(4);
    expect(await keysOf(tenant.slug)).toHaveLength(3);
  });
});
