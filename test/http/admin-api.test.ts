import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

describe.each(DRIVERS)('admin API on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver);
  });
  afterAll(async () => {
    await env?.close();
  });

  async function tenantCount(): Promise<number> {
    const { rows } = await env.engine.db.owner.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM tenantry.tenants',
    );
    return rows[0]!.n;
  }

  it('creates a tenant and shows its key once, stored only as a hash', async () => {
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Acme Corp',
      slug: 'acme',
      hosts: ['Acme.Example.com.'],
      config: {
        features: ['reports'],
        limits: { requestsPerSecond: 10 },
        branding: { primaryColor: '#112233' },
      },
    });
    expect(response.statusCode).toBe(201);
    const body = response.json();
    expect(body.tenant).toMatchObject({
      name: 'Acme Corp',
      slug: 'acme',
      status: 'active',
      isolation: 'row',
      hosts: ['acme.example.com'],
    });
    expect(response.headers.location).toBe(`/admin/tenants/${body.tenant.id}`);
    expect(body.apiKey.key).toMatch(/^tny_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(body.apiKey.warning).toMatch(/shown only once/);

    const { rows } = await env.engine.db.owner.query<Record<string, unknown>>(
      'SELECT * FROM tenantry.api_keys WHERE tenant_id = $1',
      [body.tenant.id],
    );
    expect(rows).toHaveLength(1);
    const stored = JSON.stringify(rows[0]);
    const secret = body.apiKey.key.slice(-43);
    expect(stored).not.toContain(secret);
    expect(Number(rows[0]!.iterations)).toBeGreaterThanOrEqual(100_000);

    const shown = await env.admin('GET', `/admin/tenants/${body.tenant.id}`);
    expect(shown.statusCode).toBe(200);
    expect(shown.body).not.toContain(secret);
    const keys = await env.admin('GET', '/admin/tenants/acme/keys');
    expect(keys.statusCode).toBe(200);
    expect(keys.json().keys).toEqual([
      expect.objectContaining({ keyId: body.apiKey.keyId, lastUsedAt: null }),
    ]);
    expect(keys.body).not.toContain(secret);
  });

  it('gets by id and by slug, lists active tenants unless asked for inactive ones', async () => {
    const beta = await env.createTenant('beta');
    expect((await env.admin('GET', '/admin/tenants/beta')).json().id).toBe(beta.id);
    expect((await env.admin('GET', `/admin/tenants/${beta.id}`)).json().slug).toBe('beta');

    expect((await env.admin('POST', '/admin/tenants/beta/deactivate')).json().status).toBe('inactive');
    const active = (await env.admin('GET', '/admin/tenants'))
      .json()
      .tenants.map((t: { slug: string }) => t.slug);
    expect(active).toContain('acme');
    expect(active).not.toContain('beta');
    const all = (await env.admin('GET', '/admin/tenants?includeInactive=true')).json().tenants;
    expect(all.map((t: { slug: string }) => t.slug)).toContain('beta');
    expect((await env.admin('POST', '/admin/tenants/beta/activate')).json().status).toBe('active');
  });

  it('pages through tenants with a cursor', async () => {
    for (const slug of ['page-1', 'page-2', 'page-3']) await env.createTenant(slug);
    const seen: string[] = [];
    let next: string | null = null;
    do {
      const response = await env.admin('GET', `/admin/tenants?limit=2${next ? `&after=${next}` : ''}`);
      expect(response.statusCode).toBe(200);
      const page = response.json();
      expect(page.tenants.length).toBeLessThanOrEqual(2);
      seen.push(...page.tenants.map((t: { slug: string }) => t.slug));
      next = page.next;
    } while (next);
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen).toEqual(expect.arrayContaining(['acme', 'beta', 'page-1', 'page-2', 'page-3']));
  });

  it('updates with PATCH and replaces with PUT', async () => {
    await env.createTenant('gamma', { hosts: ['gamma.example.com'] });
    const patched = await env.admin('PATCH', '/admin/tenants/gamma', { name: 'Gamma Inc' });
    expect(patched.statusCode).toBe(200);
    expect(patched.json()).toMatchObject({ name: 'Gamma Inc', slug: 'gamma', hosts: ['gamma.example.com'] });

    const replaced = await env.admin('PUT', '/admin/tenants/gamma', {
      name: 'Gamma',
      slug: 'gamma-two',
      hosts: ['g2.example.com'],
      config: { features: ['x'] },
    });
    expect(replaced.statusCode).toBe(200);
    expect(replaced.json()).toMatchObject({
      slug: 'gamma-two',
      hosts: ['g2.example.com'],
      config: { features: ['x'] },
    });
    expect((await env.admin('GET', '/admin/tenants/gamma')).statusCode).toBe(404);

    const isolation = await env.admin('PATCH', '/admin/tenants/gamma-two', { isolation: 'schema' });
    expect(isolation.statusCode).toBe(409);
    expect(isolation.json()).toMatchObject({ code: 'conflict', field: 'isolation' });
  });

  it('adds and removes hosts, normalised and unique across tenants', async () => {
    await env.createTenant('delta');
    const added = await env.admin('POST', '/admin/tenants/delta/hosts', { host: 'Delta.Example.org.' });
    expect(added.statusCode).toBe(200);
    expect(added.json().hosts).toEqual(['delta.example.org']);

    const taken = await env.admin('POST', '/admin/tenants/acme/hosts', { host: 'delta.example.org' });
    expect(taken.statusCode).toBe(409);
    expect(taken.json()).toMatchObject({ code: 'conflict' });

    // A host under the base domain that names another tenant's slug.
    const spoof = await env.admin('POST', '/admin/tenants/delta/hosts', { host: 'acme.localhost' });
    expect(spoof.statusCode).toBe(409);
    expect(spoof.json().detail).toContain('reserved for the tenant whose slug is "acme"');
    // ... and one that names a slug nobody has yet: it would take that slug from its future owner.
    const squat = await env.admin('POST', '/admin/tenants/delta/hosts', { host: 'future.localhost' });
    expect(squat.statusCode).toBe(409);
    expect(squat.json()).toMatchObject({ code: 'conflict', field: 'hosts/0' });
    expect((await env.createTenant('future')).slug).toBe('future');
    // A tenant's own slug under the base domain is its own to register.
    const own = await env.admin('POST', '/admin/tenants/delta/hosts', { host: 'delta.localhost' });
    expect(own.statusCode).toBe(200);
    expect((await env.admin('DELETE', '/admin/tenants/delta/hosts/delta.localhost')).statusCode).toBe(200);
    // The service's own names under the base domain belong to no tenant.
    for (const host of ['www.localhost', 'admin.localhost', 'API.localhost']) {
      const reserved = await env.admin('POST', '/admin/tenants/delta/hosts', { host });
      expect(reserved.statusCode, host).toBe(400);
      expect(reserved.json()).toMatchObject({ code: 'validation_failed', field: 'hosts/0' });
    }
    const created = await env.admin('POST', '/admin/tenants', {
      name: 'Squatter',
      slug: 'squatter',
      hosts: ['squatter.example.org', 'console.localhost'],
    });
    expect(created.statusCode).toBe(400);
    expect(created.json()).toMatchObject({ code: 'validation_failed', field: 'hosts/1' });

    const removed = await env.admin('DELETE', '/admin/tenants/delta/hosts/delta.example.org');
    expect(removed.statusCode).toBe(200);
    expect(removed.json().hosts).toEqual([]);
    const again = await env.admin('DELETE', '/admin/tenants/delta/hosts/delta.example.org');
    expect(again.statusCode).toBe(404);
  });

  it('keeps <slug>.<baseDomain> for the slug it names: no tenant may register it before that tenant exists', async () => {
    const squat = await env.admin('POST', '/admin/tenants', {
      name: 'Epsilon',
      slug: 'epsilon',
      hosts: ['zeta.localhost'],
    });
    expect(squat.statusCode).toBe(409);
    expect(squat.json()).toMatchObject({ code: 'conflict', field: 'hosts/0' });
    expect((await env.admin('GET', '/admin/tenants/epsilon')).statusCode).toBe(404);
    expect((await env.createTenant('zeta')).slug).toBe('zeta');
  });

  it('refuses a slug whose <slug>.<baseDomain> a tenant registered before this rule', async () => {
    const epsilon = await env.createTenant('epsilon');
    await env.engine.db.owner.query('INSERT INTO tenantry.tenant_hosts (host, tenant_id) VALUES ($1, $2)', [
      'legacy-squat.localhost',
      epsilon.id,
    ]);
    const response = await env.admin('POST', '/admin/tenants', { name: 'Legacy', slug: 'legacy-squat' });
    expect(response.statusCode).toBe(409);
    expect(response.json()).toMatchObject({ code: 'conflict', field: 'slug' });
  });

  it('soft-deletes: the tenant stops resolving, its slug is released, the record stays', async () => {
    const eta = await env.createTenant('eta', { hosts: ['eta.example.net'] });
    const deleted = await env.admin('DELETE', '/admin/tenants/eta');
    expect(deleted.statusCode).toBe(200);
    expect(deleted.json()).toMatchObject({ status: 'deleted', hosts: [] });
    expect((await env.admin('GET', '/admin/tenants/eta')).statusCode).toBe(404);
    expect((await env.admin('GET', `/admin/tenants/${eta.id}`)).json().status).toBe('deleted');
    expect((await env.inject({ url: '/tenant-info', headers: { 'x-api-key': eta.key } })).statusCode).toBe(
      401,
    );
    expect((await env.inject({ url: '/tenant-info', headers: { host: 'eta.example.net' } })).statusCode).toBe(
      401,
    );
    const reused = await env.admin('POST', '/admin/tenants', {
      name: 'Eta again',
      slug: 'eta',
      hosts: ['eta.example.net'],
    });
    expect(reused.statusCode).toBe(201);
    expect((await env.admin('DELETE', `/admin/tenants/${eta.id}`)).statusCode).toBe(404);
  });

  it('regenerates the key: the new one works, the old one is revoked at once', async () => {
    const theta = await env.createTenant('theta');
    expect((await env.inject({ url: '/tenant-info', headers: { 'x-api-key': theta.key } })).statusCode).toBe(
      200,
    );
    const regenerated = await env.admin('POST', '/admin/tenants/theta/regenerate-api-key');
    expect(regenerated.statusCode).toBe(200);
    const fresh = regenerated.json();
    expect(fresh.warning).toMatch(/shown only once/);
    expect((await env.inject({ url: '/tenant-info', headers: { 'x-api-key': theta.key } })).statusCode).toBe(
      401,
    );
    expect((await env.inject({ url: '/tenant-info', headers: { 'x-api-key': fresh.key } })).statusCode).toBe(
      200,
    );
    const keys = (await env.admin('GET', '/admin/tenants/theta/keys?includeRevoked=true')).json().keys;
    expect(keys).toHaveLength(2);
    expect(keys.filter((k: { revokedAt: string | null }) => k.revokedAt !== null)).toHaveLength(1);
  });

  describe('bad input gets a clear error and changes nothing', () => {
    const cases: [string, unknown, string][] = [
      ['upper case slug', { name: 'x', slug: 'Upper' }, 'slug'],
      ['unicode slug', { name: 'x', slug: 'çafe' }, 'slug'],
      ['dotted slug', { name: 'x', slug: 'a.b.c' }, 'slug'],
      ['slug with spaces', { name: 'x', slug: 'a b c' }, 'slug'],
      ['SQL in slug', { name: 'x', slug: "x'; DROP TABLE tenantry.tenants; --" }, 'slug'],
      ['reserved slug', { name: 'x', slug: 'admin' }, 'slug'],
      ['too short slug', { name: 'x', slug: 'ab' }, 'slug'],
      ['missing name', { slug: 'valid-slug' }, 'name'],
      ['blank name', { name: '   ', slug: 'valid-slug' }, 'name'],
      ['unknown field', { name: 'x', slug: 'valid-slug', owner: 'me' }, 'owner'],
      ['unknown config key', { name: 'x', slug: 'valid-slug', config: { secret: 1 } }, 'config/secret'],
      ['host with port', { name: 'x', slug: 'valid-slug', hosts: ['a.example.com:8080'] }, 'hosts/0'],
      ['host with path', { name: 'x', slug: 'valid-slug', hosts: ['a.example.com/x'] }, 'hosts/0'],
      ['confusable host', { name: 'x', slug: 'valid-slug', hosts: ['аcme.example.com'] }, 'hosts/0'],
      ['overlong host', { name: 'x', slug: 'valid-slug', hosts: [`${'a.'.repeat(127)}com`] }, 'hosts/0'],
      ['bad isolation', { name: 'x', slug: 'valid-slug', isolation: 'cluster' }, 'isolation'],
      ['string instead of object', JSON.stringify('hello'), '(body)'],
      ['array body', [1, 2], '(body)'],
    ];
    it.each(cases)('%s → 400 naming the field', async (_, body, field) => {
      const before = await tenantCount();
      const response = await env.inject({
        method: 'POST',
        url: '/admin/tenants',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload: typeof body === 'string' ? body : JSON.stringify(body),
      });
      expect(response.statusCode).toBe(400);
      expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
      const problem = response.json();
      expect(problem).toMatchObject({ code: 'validation_failed', status: 400 });
      expect(problem.field).toBe(field);
      expect(await tenantCount()).toBe(before);
    });

    it('malformed JSON → 400', async () => {
      const response = await env.inject({
        method: 'POST',
        url: '/admin/tenants',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload: '{"name": "x", "slug": ',
      });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toMatchObject({ code: 'validation_failed' });
    });

    it('a non-JSON body → 415', async () => {
      const response = await env.inject({
        method: 'POST',
        url: '/admin/tenants',
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'text/plain' },
        payload: 'name=x&slug=y',
      });
      expect(response.statusCode).toBe(415);
      expect(response.json()).toMatchObject({ code: 'unsupported_media_type' });
    });

    it('a body over 1 MiB → 413', async () => {
      const before = await tenantCount();
      const response = await env.admin('POST', '/admin/tenants', {
        name: 'x',
        slug: 'huge-body',
        config: { settings: { blob: 'x'.repeat(1024 * 1024 + 10) } },
      });
      expect(response.statusCode).toBe(413);
      expect(response.json()).toMatchObject({ code: 'payload_too_large' });
      expect(await tenantCount()).toBe(before);
    });

    it('a duplicate slug → 409', async () => {
      const response = await env.admin('POST', '/admin/tenants', { name: 'Acme 2', slug: 'acme' });
      expect(response.statusCode).toBe(409);
      expect(response.json()).toMatchObject({ code: 'conflict', field: 'slug' });
    });

    it('a duplicate host → 409', async () => {
      const response = await env.admin('POST', '/admin/tenants', {
        name: 'Other',
        slug: 'other-acme',
        hosts: ['acme.example.com'],
      });
      expect(response.statusCode).toBe(409);
      expect(response.json()).toMatchObject({ code: 'conflict', field: 'hosts/0' });
      expect((await env.admin('GET', '/admin/tenants/other-acme')).statusCode).toBe(404);
    });

    it('an unknown tenant → 404 tenant_not_found', async () => {
      for (const id of ['nobody', '0190f5c2-6f3d-7a2b-8c4d-0123456789ab']) {
        const response = await env.admin('GET', `/admin/tenants/${id}`);
        expect(response.statusCode).toBe(404);
        expect(response.json().code).toBe('tenant_not_found');
      }
    });

    it('no stack trace, SQL or internal name in any error', async () => {
      const responses = await Promise.all([
        env.admin('POST', '/admin/tenants', { name: 'x', slug: "'; select pg_sleep(1); --" }),
        env.admin('GET', `/admin/tenants/${'x'.repeat(500)}`),
        env.admin('GET', '/admin/audit?since=yesterday'),
        env.admin('GET', '/admin/audit?before=abc'),
        // JavaScript reads these years; PostgreSQL does not.
        env.admin('GET', '/admin/audit?since=-200000-01-01T00:00:00Z'),
        env.admin('GET', '/admin/audit?until=%2B275000-01-01T00:00:00Z'),
        env.admin('GET', '/admin/tenants?limit=0'),
        env.admin('GET', '/admin/tenants?after=nope'),
      ]);
      for (const response of responses) {
        expect(response.statusCode).toBeGreaterThanOrEqual(400);
        expect(response.statusCode).toBeLessThan(500);
        expect(response.body).not.toMatch(/at .*\.(ts|js):\d+|SELECT|tenantry\.|pg_|constraint/i);
      }
    });
  });

  describe('the admin token', () => {
    it.each([
      ['missing', undefined, 'unauthenticated'],
      ['wrong', 'Bearer not-the-token', 'invalid_credentials'],
      ['not bearer', 'Basic dGVzdDp0ZXN0', 'unauthenticated'],
      ['empty bearer', 'Bearer ', 'unauthenticated'],
    ])('%s → 401', async (_, authorization, code) => {
      const response = await env.inject({
        method: 'POST',
        url: '/admin/tenants',
        headers: authorization === undefined ? {} : { authorization },
        payload: { name: 'x', slug: 'sneaky' },
      });
      expect(response.statusCode).toBe(401);
      expect(response.json().code).toBe(code);
      expect((await env.admin('GET', '/admin/tenants/sneaky')).statusCode).toBe(404);
    });

    it('a tenant API key does not open admin routes', async () => {
      const tenant = await env.createTenant('iota');
      const response = await env.inject({ url: '/admin/tenants', headers: { 'x-api-key': tenant.key } });
      expect(response.statusCode).toBe(401);
      const asBearer = await env.inject({
        url: '/admin/tenants',
        headers: { authorization: `Bearer ${tenant.key}` },
      });
      expect(asBearer.statusCode).toBe(401);
    });
  });

  it('audits every admin action with actor, action, tenant, outcome and address', async () => {
    const response = await env.admin('GET', '/admin/audit?tenant=acme');
    expect(response.statusCode).toBe(200);
    const entries = response.json().entries;
    expect(entries.at(-1)).toMatchObject({
      actor: 'admin-token:admin',
      action: 'tenant.create',
      target: 'acme',
      outcome: 'success',
      clientAddress: '127.0.0.1',
    });
    const hostAdds = (await env.admin('GET', '/admin/audit?action=tenant.host')).json().entries;
    expect(
      hostAdds.some(
        (e: { action: string; outcome: string }) => e.action === 'tenant.host.add' && e.outcome === 'failure',
      ),
    ).toBe(true);
    const firstPage = (await env.admin('GET', '/admin/audit?limit=2')).json();
    expect(firstPage.entries).toHaveLength(2);
    const secondPage = (await env.admin('GET', `/admin/audit?limit=2&before=${firstPage.next}`)).json();
    expect(Number(secondPage.entries[0].id)).toBeLessThan(Number(firstPage.entries[1].id));
  });

  it('serves health, readiness and the OpenAPI document', async () => {
    expect((await env.inject({ url: '/healthz' })).json()).toEqual({ status: 'ok' });
    expect((await env.inject({ url: '/readyz' })).json()).toEqual({ status: 'ready' });
    const openapi = (await env.inject({ url: '/openapi.json' })).json();
    expect(openapi.openapi).toBe('3.1.0');
    expect(Object.keys(openapi.paths)).toEqual(expect.arrayContaining(['/admin/tenants', '/tenant-info']));
    const docs = await env.inject({ url: '/docs/' });
    expect(docs.statusCode).toBe(200);
    expect(docs.headers['content-type']).toMatch(/text\/html/);
  });

  it('answers unknown routes with a problem document', async () => {
    const response = await env.inject({ url: '/nope' });
    expect(response.statusCode).toBe(404);
    expect(response.json()).toMatchObject({ code: 'not_found' });
  });
});
