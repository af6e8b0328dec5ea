import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const ENTITIES = normaliseEntities({
  documents: { scope: 'tenant', fields: { body: { type: 'text' } } },
});

const MB = 1024 * 1024;

/** About 1.5 kB that does not compress: stays in the table's heap, not in TOAST. */
const body = () => randomBytes(1100).toString('base64');

interface Usage {
  rows: { total: number };
  storage: { bytes: number; estimated: boolean; measuredAt: string };
  apiKeys: { live: number };
  limits: Record<string, number>;
}

describe.each(DRIVERS)('storage quota (maxStorageMb), on %s', (driver) => {
  let env: TestEnv;

  beforeAll(async () => {
    // Measured before every checked write, so a test sees a refusal on the first write over it.
    env = await startTestEnv(
      driver,
      { entities: ENTITIES, plans: { tiny: { limits: { maxStorageMb: 0.01 } } } },
      { storageMeasureIntervalMs: 0 },
    );
  });
  afterAll(async () => {
    await env.close();
  });

  const post = (key: string, url: string, payload: unknown) =>
    env.inject({ method: 'POST', url, headers: { 'x-api-key': key }, payload: payload as object });
  const usageOf = async (slug: string): Promise<Usage> => {
    const response = await env.admin('GET', `/admin/tenants/${slug}/usage`);
    expect(response.statusCode, response.body).toBe(200);
    return response.json();
  };
  /** Creates documents one by one until a write is refused; returns the refusal and the count written. */
  const fillUntilRefused = async (key: string, most: number) => {
    for (let written = 0; written < most; written += 1) {
      const response = await post(key, '/api/v1/documents', { body: body() });
      if (response.statusCode !== 201) return { response, written };
    }
    throw new Error(`${most} documents were written without a refusal`);
  };

  it('a schema tenant is refused once it stores its quota, naming it; nothing is written; deletes and clearing updates go on', async () => {
    const tenant = await env.createTenant('store-schema', { isolation: 'schema' });
    const empty = await usageOf(tenant.slug);
    expect(empty.storage.estimated).toBe(false);
    expect(empty.storage.bytes).toBeGreaterThan(0); // empty tables still have index pages
    // Room for a few dozen kilobytes more than its empty tables.
    const quotaMb = Number(((empty.storage.bytes + 48 * 1024) / MB).toFixed(4));
    await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, {
      set: { 'limits.maxStorageMb': quotaMb },
    });

    const { response, written } = await fillUntilRefused(tenant.key, 200);
    expect(written).toBeGreaterThan(5);
    expect(response.statusCode).toBe(403);
    expect(response.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(response.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxStorageMb' });
    expect(response.json().detail).toContain('maxStorageMb');

    const batch = await post(tenant.key, '/api/v1/documents/batch', { rows: [{ body: 'a' }, { body: 'b' }] });
    expect(batch.statusCode).toBe(403);
    expect(batch.json().field).toBe('limits.maxStorageMb');

    const usage = await usageOf(tenant.slug);
    expect(usage.rows.total).toBe(written);
    expect(usage.storage.bytes).toBeGreaterThanOrEqual(quotaMb * MB);
    expect(usage.limits).toEqual({ maxStorageMb: quotaMb });

    // An update that sets a value could grow a row without bound (small rows made under the
    // quota, then each one grown): refused. Clearing values and deleting rows stay open.
    const list = (
      await env.inject({ url: '/api/v1/documents?limit=2', headers: { 'x-api-key': tenant.key } })
    ).json();
    const [first, second] = list.items as { id: string }[];
    const patch = (payload: object) =>
      env.inject({
        method: 'PATCH',
        url: `/api/v1/documents/${first!.id}`,
        headers: { 'x-api-key': tenant.key },
        payload,
      });
    const grown = await patch({ body: body().repeat(50) });
    expect(grown.statusCode).toBe(403);
    expect(grown.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxStorageMb' });
    const cleared = await patch({ body: null });
    expect(cleared.statusCode, cleared.body).toBe(200);
    expect(cleared.json().body).toBeNull();
    const deleted = await env.inject({
      method: 'DELETE',
      url: `/api/v1/documents/${second!.id}`,
      headers: { 'x-api-key': tenant.key },
    });
    expect(deleted.statusCode).toBe(204);

    // A larger quota lets it write again.
    await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, { set: { 'limits.maxStorageMb': 100 } });
    expect((await post(tenant.key, '/api/v1/documents', { body: 'more' })).statusCode).toBe(201);

    const metrics = (await env.admin('GET', '/metrics')).body;
    expect(metrics).toContain('tenantry_quota_refused_total{tenant="store-schema",quota="maxStorageMb"} 3');
  });

  it('a row tenant is refused on its estimated share of the shared tables', async () => {
    const big = await env.createTenant('store-row-big', { isolation: 'row' });
    const batch = await post(big.key, '/api/v1/documents/batch', {
      rows: Array.from({ length: 40 }, () => ({ body: body() })),
    });
    expect(batch.statusCode, batch.body).toBe(201);

    const small = await env.createTenant('store-row-small', { isolation: 'row', plan: 'tiny' });
    expect((await usageOf(small.slug)).storage).toMatchObject({ bytes: 0, estimated: true });
    const { response, written } = await fillUntilRefused(small.key, 100);
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxStorageMb' });
    expect(written).toBeGreaterThan(0);

    const smallUsage = await usageOf(small.slug);
    const bigUsage = await usageOf(big.slug);
    expect(smallUsage.rows.total).toBe(written);
    expect(smallUsage.storage.estimated).toBe(true);
    expect(smallUsage.storage.bytes).toBeGreaterThanOrEqual(0.01 * MB);
    // A share, not the whole table: the big tenant holds most of the rows and most of the bytes.
    expect(smallUsage.storage.bytes).toBeLessThan(bigUsage.storage.bytes);

    // The tenant without the limit writes on, and is never measured on its writes.
    expect((await post(big.key, '/api/v1/documents', { body: body() })).statusCode).toBe(201);
    const unmeasured = await env.createTenant('store-row-free', { isolation: 'row' });
    expect((await post(unmeasured.key, '/api/v1/documents', { body: body() })).statusCode).toBe(201);
    expect(env.engine.usage.storage.latest(unmeasured.id)).toBeUndefined();
  });

  it.runIf(driver === 'postgres')('a database tenant counts its whole database', async () => {
    const tenant = await env.createTenant('store-database', { isolation: 'database' });
    const usage = await usageOf(tenant.slug);
    expect(usage.storage.estimated).toBe(false);
    expect(usage.storage.bytes).toBeGreaterThan(MB); // PostgreSQL's own catalogue is part of it
    await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, { set: { 'limits.maxStorageMb': 1 } });
    const refused = await post(tenant.key, '/api/v1/documents', { body: 'x' });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().field).toBe('limits.maxStorageMb');
    expect((await usageOf(tenant.slug)).rows.total).toBe(0);
  });

  it('/tenant-info shows usage only when asked, and only to a caller with credentials', async () => {
    const tenant = await env.createTenant('store-info', { plan: 'tiny', hosts: ['store-info.example.com'] });
    expect((await post(tenant.key, '/api/v1/documents', { body: 'one' })).statusCode).toBe(201);

    const plain = await env.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } });
    expect(plain.statusCode).toBe(200);
    expect(plain.json()).not.toHaveProperty('usage');

    const withUsage = await env.inject({
      url: '/tenant-info?include=usage',
      headers: { 'x-api-key': tenant.key },
    });
    expect(withUsage.statusCode, withUsage.body).toBe(200);
    expect(withUsage.json().slug).toBe(tenant.slug);
    const usage = withUsage.json().usage as Usage;
    expect(usage.rows).toEqual({ byEntity: { documents: 1 }, total: 1 });
    expect(usage.apiKeys).toEqual({ live: 1 });
    expect(usage.limits).toEqual({ maxStorageMb: 0.01 });
    expect(usage.storage.estimated).toBe(true);
    expect(Date.parse(usage.storage.measuredAt)).not.toBeNaN();
    const current = await env.inject({
      url: '/tenants/current?include=usage',
      headers: { 'x-api-key': tenant.key },
    });
    expect(current.json().usage.rows.total).toBe(1);

    // The host alone is not a secret: it gets the public view, and no usage.
    const anonymous = await env.inject({ url: '/tenant-info', headers: { host: 'store-info.example.com' } });
    expect(anonymous.statusCode).toBe(200);
    expect(anonymous.json()).not.toHaveProperty('usage');
    const refused = await env.inject({
      url: '/tenant-info?include=usage',
      headers: { host: 'store-info.example.com' },
    });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(refused.json().code).toBe('unauthenticated');
    expect(refused.body).not.toContain('"rows"');

    for (const query of ['include=everything', 'include=usage&include=usage', 'include=']) {
      const bad = await env.inject({ url: `/tenant-info?${query}`, headers: { 'x-api-key': tenant.key } });
      expect(bad.statusCode, query).toBe(400);
      expect(bad.json()).toMatchObject({ code: 'validation_failed', field: 'include' });
    }
  });
});

describe.each(DRIVERS)('storage measurements between writes, on %s', (driver) => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: ENTITIES }, { storageMeasureIntervalMs: 60_000 });
  });
  afterAll(async () => {
    await env.close();
  });

  it('a measurement is trusted for the interval; the usage route measures afresh', async () => {
    const tenant = await env.createTenant('store-interval', { isolation: 'schema' });
    const empty = (await env.admin('GET', `/admin/tenants/${tenant.slug}/usage`)).json() as Usage;
    const quotaMb = Number(((empty.storage.bytes + 16 * 1024) / MB).toFixed(4));
    await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, {
      set: { 'limits.maxStorageMb': quotaMb },
    });
    const rows = Array.from({ length: 40 }, () => ({ body: body() }));
    const headers = { 'x-api-key': tenant.key };
    // Under the quota when last measured: the batch is admitted (the quota is soft by one interval).
    const admitted = await env.inject({
      method: 'POST',
      url: '/api/v1/documents/batch',
      headers,
      payload: { rows },
    });
    expect(admitted.statusCode).toBe(201);
    const measuredAt = env.engine.usage.storage.latest(tenant.id)?.measuredAt;
    expect(
      (await env.inject({ method: 'POST', url: '/api/v1/documents', headers, payload: {} })).statusCode,
    ).toBe(201);
    expect(env.engine.usage.storage.latest(tenant.id)?.measuredAt).toBe(measuredAt);

    const usage = (await env.admin('GET', `/admin/tenants/${tenant.slug}/usage`)).json() as Usage;
    expect(usage.storage.bytes).toBeGreaterThan(quotaMb * MB);
    const refused = await env.inject({ method: 'POST', url: '/api/v1/documents', headers, payload: {} });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().field).toBe('limits.maxStorageMb');
  });
});
