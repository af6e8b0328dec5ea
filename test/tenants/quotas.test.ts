import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { holdWrites } from '../helpers/hold-writes.js';
import { createTestTenant, tableOf } from '../helpers/isolation.js';

const ENTITIES = normaliseEntities({
  projects: { scope: 'tenant', fields: { name: { type: 'text', required: true } } },
  notes: { scope: 'tenant', fields: { body: { type: 'text' } } },
});

describe.each(DRIVERS)('row quotas at write time, on %s', (driver) => {
  let env: TestEnv;

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      entities: ENTITIES,
      plans: { small: { limits: { maxRowsPerEntity: 2, maxRows: 3 } }, unlimited: {} },
    });
  });
  afterAll(async () => {
    await env.close();
  });

  const post = (key: string, url: string, payload: unknown) =>
    env.inject({
      method: 'POST',
      url,
      headers: { 'x-api-key': key },
      payload: payload as Record<string, unknown>,
    });

  it('refuses with 403 quota_exceeded naming the quota, and writes nothing', async () => {
    const tenant = await env.createTenant('quota-small', { plan: 'small', isolation: 'schema' });
    expect((await post(tenant.key, '/api/v1/projects', { name: 'one' })).statusCode).toBe(201);
    expect((await post(tenant.key, '/api/v1/projects', { name: 'two' })).statusCode).toBe(201);
    const perEntity = await post(tenant.key, '/api/v1/projects', { name: 'three' });
    expect(perEntity.statusCode).toBe(403);
    expect(perEntity.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxRowsPerEntity' });
    expect(perEntity.json().detail).toContain('maxRowsPerEntity');

    const batch = await post(tenant.key, '/api/v1/notes/batch', { rows: [{ body: 'a' }, { body: 'b' }] });
    expect(batch.statusCode).toBe(403);
    expect(batch.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxRows' });
    expect((await post(tenant.key, '/api/v1/notes', { body: 'a' })).statusCode).toBe(201);
    expect((await post(tenant.key, '/api/v1/notes', { body: 'b' })).statusCode).toBe(403);

    const usage = await env.admin('GET', `/admin/tenants/${tenant.slug}/usage`);
    expect(usage.statusCode, usage.body).toBe(200);
    expect(usage.json()).toMatchObject({
      rows: { byEntity: { projects: 2, notes: 1 }, total: 3 },
      apiKeys: { live: 1 },
    });
    expect(usage.json().limits).toEqual({ maxRows: 3, maxRowsPerEntity: 2 });

    // Every refusal is counted by tenant and quota.
    const metrics = (await env.admin('GET', '/metrics')).body;
    expect(metrics).toContain(
      'tenantry_quota_refused_total{tenant="quota-small",quota="maxRowsPerEntity"} 1',
    );
    expect(metrics).toContain('tenantry_quota_refused_total{tenant="quota-small",quota="maxRows"} 2');
  });

  it('an override lifts the quota; a tenant without limits is not counted', async () => {
    const tenant = await env.createTenant('quota-raised', { plan: 'small' });
    await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, {
      set: { 'limits.maxRowsPerEntity': 3 },
    });
    for (const name of ['a', 'b', 'c']) {
      expect((await post(tenant.key, '/api/v1/projects', { name })).statusCode).toBe(201);
    }
    const free = await env.createTenant('quota-free', { plan: 'unlimited' });
    for (let i = 0; i < 5; i += 1) {
      expect((await post(free.key, '/api/v1/projects', { name: `p${i}` })).statusCode).toBe(201);
    }
    const usage = await env.admin('GET', `/admin/tenants/${free.slug}/usage`);
    expect(usage.json()).toMatchObject({ rows: { byEntity: { projects: 5, notes: 0 }, total: 5 } });
    expect(usage.json().limits).toEqual({});
  });

  it.runIf(driver === 'postgres')('concurrent writers never exceed the quota', async () => {
    const tenant = await createTestTenant(env, 'quota-race', 'schema', { plan: 'small' });
    const writers = 5;
    // Every writer is held at its insert until all have counted or wait for their turn: without
    // the tenant's lock they would all count no rows, and all insert.
    const held = await holdWrites(env.databaseUrl!, [tableOf(tenant.placement, 'projects')]);
    const writing = Promise.all(
      Array.from({ length: writers }, (_, i) => post(tenant.key, '/api/v1/projects', { name: `race-${i}` })),
    );
    await held.releaseWhen((waiting) => waiting >= writers);
    const results = await writing;
    expect(results.map((response) => response.statusCode).sort()).toEqual([201, 201, 403, 403, 403]);
    const usage = await env.admin('GET', `/admin/tenants/${tenant.slug}/usage`);
    expect(usage.json().rows.byEntity.projects).toBe(2);
  });
});
