import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { slowHashRuns } from '../helpers/slow-hash-runs.js';

vi.mock('node:crypto', async (original) =>
  (await import('../helpers/slow-hash-runs.js')).recordingCrypto(await original()),
);

describe.each(DRIVERS)('tenant resolution on %s', (driver) => {
  let env: TestEnv;
  let acme: { id: string; slug: string; key: string };
  let beta: { id: string; slug: string; key: string };

  beforeAll(async () => {
    env = await startTestEnv(driver);
    acme = await env.createTenant('acme', {
      hosts: ['acme.example.com'],
      config: {
        features: ['reports'],
        branding: { displayName: 'ACME' },
        limits: { requestsPerSecond: 5 },
        settings: { internalNote: 'do not show' },
      },
    });
    beta = await env.createTenant('beta', { hosts: ['beta.example.com'] });
  });
  afterAll(async () => {
    await env?.close();
  });

  const info = (headers: Record<string, string>, url = '/tenant-info') => env.inject({ url, headers });

  it('resolves by API key, registered host and <slug>.<baseDomain>, and shows only the public config', async () => {
    const variants: Record<string, string>[] = [
      { 'x-api-key': acme.key },
      { host: 'acme.example.com' },
      { host: 'acme.localhost:3000' },
    ];
    for (const headers of variants) {
      const response = await info(headers);
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({
        id: acme.id,
        name: 'Tenant acme',
        slug: 'acme',
        status: 'active',
        isolation: 'row',
        hosts: ['acme.example.com'],
        config: { features: ['reports'], branding: { displayName: 'ACME' } },
      });
      expect(response.body).not.toContain('internalNote');
      expect(response.body).not.toContain('requestsPerSecond');
    }
    const current = await env.inject({ url: '/tenants/current', headers: { 'x-api-key': beta.key } });
    expect(current.json().id).toBe(beta.id);
  });

  it('accepts a host and a key that agree', async () => {
    expect((await info({ host: 'acme.example.com', 'x-api-key': acme.key })).statusCode).toBe(200);
  });

  it('refuses a host and a key of different tenants with 403 cross_tenant, and audits it', async () => {
    const response = await info({ host: 'beta.example.com', 'x-api-key': acme.key });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ code: 'cross_tenant' });
    expect(response.body).not.toContain(beta.id);
    const bySlugHost = await info({ host: 'beta.localhost', 'x-api-key': acme.key });
    expect(bySlugHost.statusCode).toBe(403);

    // Filed under both tenants: the one reached for and the one whose key was used.
    for (const [slug, id] of [
      ['beta', beta.id],
      ['acme', acme.id],
    ]) {
      const audit = (await env.admin('GET', `/admin/audit?action=resolve.cross_tenant&tenant=${slug}`)).json()
        .entries;
      expect(audit.length, slug).toBeGreaterThanOrEqual(2);
      expect(audit[0]).toMatchObject({
        actor: expect.stringMatching(/^api-key:[0-9a-f]{16}$/),
        outcome: 'denied',
        tenantId: id,
        target: acme.id,
        details: expect.objectContaining({ hostTenant: beta.id, keyTenant: acme.id }),
      });
    }
    // The attacked tenant's admin finds it in its own trail, without the other tenant's id.
    const own = await info({ 'x-api-key': beta.key }, '/api/v1/audit?action=resolve.cross_tenant');
    expect(own.statusCode, own.body).toBe(200);
    expect(own.json().entries[0]).toMatchObject({
      tenantId: beta.id,
      details: expect.objectContaining({ hostTenant: beta.id, keyTenant: 'another tenant' }),
    });
    expect(own.body).not.toContain(acme.id);
  });

  it('ignores X-Forwarded-Host unless server.trustProxy is set', async () => {
    const forged = await info({ host: 'localhost', 'x-forwarded-host': 'acme.example.com' });
    expect(forged.statusCode).toBe(401);
    expect(forged.json().code).toBe('tenant_required');
    // A forged header cannot switch the tenant that the real host names either.
    const switched = await info({ host: 'beta.example.com', 'x-forwarded-host': 'acme.example.com' });
    expect(switched.json().id).toBe(beta.id);
  });

  it('answers 401 tenant_required without any credential and 404 for an unknown tenant host', async () => {
    const none = await info({ host: 'localhost' });
    expect(none.statusCode).toBe(401);
    expect(none.json().code).toBe('tenant_required');
    const unknown = await info({ host: 'ghost.localhost' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe('tenant_not_found');
    // Even with a valid key: the request was meant for a tenant that is not there.
    const unknownWithKey = await info({ host: 'ghost.localhost', 'x-api-key': acme.key });
    expect(unknownWithKey.statusCode).toBe(404);
    // Reserved names under the base domain are the service's own, not tenants.
    expect((await info({ host: 'www.localhost', 'x-api-key': acme.key })).statusCode).toBe(200);
  });

  describe('an invalid key is 401 invalid_credentials, with the same shape whatever is wrong', () => {
    let gone: { id: string; key: string };
    let off: { id: string; key: string };
    beforeAll(async () => {
      gone = await env.createTenant('gone');
      off = await env.createTenant('off');
      await env.admin('DELETE', '/admin/tenants/gone');
      await env.admin('POST', '/admin/tenants/off/deactivate');
    });

    const wrongSecret = () => `${acme.key.slice(0, 21)}${'A'.repeat(43)}`;
    const unknownId = () => `tny_0000000000000000_${acme.key.slice(-43)}`;
    const cases: [string, () => string][] = [
      ['empty', () => ''],
      ['truncated', () => acme.key.slice(0, -1)],
      ['garbage', () => 'hello world'],
      ['overlong', () => `${acme.key}${'x'.repeat(5000)}`],
      ['valid key id, wrong secret', wrongSecret],
      ['unknown key id', unknownId],
      ['deleted tenant', () => gone.key],
      ['deactivated tenant', () => off.key],
    ];

    it.each(cases)('%s', async (_, key) => {
      const response = await info({ 'x-api-key': key() });
      expect(response.statusCode).toBe(401);
      const { requestId, ...problem } = response.json();
      expect(requestId).toEqual(expect.any(String));
      expect(problem).toEqual({
        type: 'urn:tenantry:problem:invalid_credentials',
        title: 'Invalid credentials',
        status: 401,
        code: 'invalid_credentials',
        detail: 'the API key is not valid',
      });
    });

    it('pays one full slow hash for an unknown key id, a wrong secret and garbage alike (no early exit)', async () => {
      const slowHashesFor = async (key: string) => {
        env.engine.apiKeys.clear();
        slowHashRuns.length = 0;
        expect(await env.engine.apiKeys.verify(key)).toBeUndefined();
        return slowHashRuns.map((run) => `${run.kind} ${run.cost}`);
      };
      const wrong = await slowHashesFor(wrongSecret());
      // A real key's own hash, for the iteration count an attacker would have to tell apart.
      expect(wrong).toHaveLength(1);
      expect(wrong[0]).toMatch(/^pbkdf2 \d{6,}$/);
      for (const key of [unknownId(), 'x', '', gone.key, off.key]) {
        expect(await slowHashesFor(key), key).toEqual(wrong);
      }
    });
  });

  it('deactivation, activation and deletion take effect at once for cached keys and hosts', async () => {
    const kappa = await env.createTenant('kappa', { hosts: ['kappa.example.com'] });
    expect((await info({ 'x-api-key': kappa.key })).statusCode).toBe(200);
    expect((await info({ host: 'kappa.example.com' })).statusCode).toBe(200);

    await env.admin('POST', '/admin/tenants/kappa/deactivate');
    expect((await info({ 'x-api-key': kappa.key })).json().code).toBe('invalid_credentials');
    const byHost = await info({ host: 'kappa.example.com' });
    expect(byHost.statusCode).toBe(403);
    expect(byHost.json().code).toBe('tenant_inactive');

    await env.admin('POST', '/admin/tenants/kappa/activate');
    expect((await info({ 'x-api-key': kappa.key })).statusCode).toBe(200);

    await env.admin('DELETE', '/admin/tenants/kappa/hosts/kappa.example.com');
    expect((await info({ host: 'kappa.example.com' })).statusCode).toBe(401);

    await env.admin('PATCH', '/admin/tenants/kappa', { slug: 'kappa-new' });
    expect((await info({ host: 'kappa.localhost' })).statusCode).toBe(404);
    expect((await info({ host: 'kappa-new.localhost' })).json().id).toBe(kappa.id);

    await env.admin('DELETE', '/admin/tenants/kappa-new');
    expect((await info({ 'x-api-key': kappa.key })).statusCode).toBe(401);
    expect((await info({ host: 'kappa-new.localhost' })).statusCode).toBe(404);
  });

  it('records when a key was last used', async () => {
    const lambda = await env.createTenant('lambda');
    await info({ 'x-api-key': lambda.key });
    await expect
      .poll(async () => (await env.admin('GET', '/admin/tenants/lambda/keys')).json().keys[0].lastUsedAt)
      .not.toBeNull();
  });
});

describe.each(DRIVERS)('trusted proxy on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, { server: { trustProxy: true } });
    await env.createTenant('acme', { hosts: ['acme.example.com'] });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('honours X-Forwarded-Host when server.trustProxy is set', async () => {
    const response = await env.inject({
      url: '/tenant-info',
      headers: { host: 'internal-lb', 'x-forwarded-host': 'acme.example.com' },
    });
    expect(response.statusCode).toBe(200);
    expect(response.json().slug).toBe('acme');
  });
});

describe.each(DRIVERS)('a proxy trusted by hop count on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, {
      server: { trustProxy: 1 },
      rateLimits: { keyFailuresPerMinute: 2, keyFailureBlockSeconds: 60 },
    });
    await env.createTenant('acme', { hosts: ['acme.example.com'] });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('honours X-Forwarded-Host from the proxy', async () => {
    const response = await env.inject({
      url: '/tenant-info',
      headers: { host: 'internal-lb', 'x-forwarded-host': 'acme.example.com' },
      remoteAddress: '10.0.0.2',
    });
    expect(response.json().slug).toBe('acme');
  });

  it('a client cannot pick its own address by forging X-Forwarded-For: the failure limit holds', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      const response = await env.inject({
        url: '/tenant-info',
        headers: {
          'x-api-key': `tny_${String(i).padStart(16, '0')}_${'D'.repeat(43)}`,
          // What the proxy appends is the client's real address; what comes before, the client wrote.
          'x-forwarded-for': `198.51.100.${i}, 203.0.113.9`,
        },
        remoteAddress: '10.0.0.2',
      });
      statuses.push(response.statusCode);
    }
    expect(statuses).toEqual([401, 401, 429, 429]);
  });
});
