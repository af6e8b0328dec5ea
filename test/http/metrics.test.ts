import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metrics, TenantLabels } from '../../src/runtime/metrics.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

/** The value of one series in a Prometheus text page, or undefined. */
function sample(page: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of page.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    const matches = Object.entries(labels).every(([key, value]) => line.includes(`${key}="${value}"`));
    if (matches) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

describe('tenant labels stay bounded', () => {
  it('the busiest tenants keep their label, the rest share "other", and a demoted tenant is dropped', () => {
    let now = 0;
    const labels = new TenantLabels({ max: 2, rebalanceMs: 1_000, now: () => now });
    const demoted: string[] = [];
    labels.onDemote = (tenant) => demoted.push(tenant);
    expect(labels.label('a')).toBe('a');
    expect(labels.label('b')).toBe('b');
    expect(labels.label('c')).toBe('other');
    expect(labels.label(undefined)).toBe('none');
    for (let i = 0; i < 10; i += 1) labels.label('c');
    labels.label('a');
    now = 1_000;
    // c was busier than b in that window: b loses its label, c takes it.
    expect(labels.label('a')).toBe('a');
    expect(demoted).toEqual(['b']);
    expect(labels.label('c')).toBe('c');
    expect(labels.label('b')).toBe('other');
    expect(labels.labelOf('c')).toBe('c');
  });

  it('a demoted tenant loses its refusal series too (every reason and quota), not only its request series', async () => {
    const metrics = new Metrics({
      tenantLabels: 1,
      rebalanceMs: 5,
      control: { query: async () => ({ rows: [], rowCount: 0 }) },
    });
    metrics.labels.label('first');
    metrics.rateLimited('first', 'rate');
    metrics.rateLimited('first', 'concurrency');
    metrics.quotaRefused('first', 'maxRows');
    expect(await metrics.registry.metrics()).toContain('tenant="first"');
    for (let i = 0; i < 10; i += 1) metrics.labels.label('busier');
    await sleep(10);
    metrics.labels.label('busier');
    const page = await metrics.registry.metrics();
    expect(page).not.toContain('tenant="first"');
  });

  it('counts a bounded number of distinct tenants per window', () => {
    const labels = new TenantLabels({ max: 1, rebalanceMs: 60_000 });
    for (let i = 0; i < 5_000; i += 1) expect(['t0', 'other']).toContain(labels.label(`t${i}`));
  });
});

describe.each(DRIVERS)('GET /metrics on %s', (driver) => {
  let env: TestEnv;
  let open: TestEnv;
  let a: { id: string; slug: string; key: string };
  let b: { id: string; slug: string; key: string };

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES, metrics: { tenantLabels: 1 } });
    a = await env.createTenant('metrics-a');
    b = await env.createTenant('metrics-b', { isolation: 'schema' });
    open = await startTestEnv(driver, { metrics: { public: true } });
  });
  afterAll(async () => {
    await env.close();
    await open.close();
  });

  it('needs the admin token unless metrics are public', async () => {
    expect((await env.inject({ url: '/metrics' })).statusCode).toBe(401);
    expect(
      (await env.inject({ url: '/metrics', headers: { authorization: 'Bearer wrong' } })).statusCode,
    ).toBe(401);
    const ok = await env.admin('GET', '/metrics');
    expect(ok.statusCode).toBe(200);
    expect(ok.headers['content-type']).toMatch(/^text\/plain/);
    expect((await open.inject({ url: '/metrics' })).statusCode).toBe(200);
  });

  it('counts requests by tenant, route pattern and status, with bounded tenant labels', async () => {
    for (let i = 0; i < 3; i += 1)
      await env.inject({ url: '/api/v1/projects', headers: { 'x-api-key': a.key } });
    await env.inject({ url: '/api/v1/projects/not-a-uuid', headers: { 'x-api-key': a.key } });
    await env.inject({ url: '/api/v1/projects', headers: { 'x-api-key': b.key } });
    await env.inject({ url: '/api/v1/projects', headers: { 'x-api-key': 'tny_0000000000000000_nope' } });
    const page = (await env.admin('GET', '/metrics')).body;
    const route = '/api/v1/projects';
    expect(sample(page, 'tenantry_http_requests_total', { tenant: a.slug, route, status: '200' })).toBe(3);
    // One label of its own (tenantLabels: 1): the second tenant is "other".
    expect(sample(page, 'tenantry_http_requests_total', { tenant: 'other', route, status: '200' })).toBe(1);
    expect(page).not.toContain(`tenant="${b.slug}"`);
    expect(
      sample(page, 'tenantry_http_requests_total', {
        tenant: a.slug,
        route: '/api/v1/projects/:id',
        status: '404',
      }),
    ).toBe(1);
    expect(sample(page, 'tenantry_http_requests_total', { tenant: 'none', route, status: '401' })).toBe(1);
    expect(page).not.toContain('not-a-uuid');
    expect(
      sample(page, 'tenantry_http_request_duration_seconds_count', { tenant: a.slug, route, method: 'GET' }),
    ).toBe(3);
    expect(
      sample(page, 'tenantry_tenant_db_duration_seconds_count', { tenant: a.slug }),
    ).toBeGreaterThanOrEqual(3);
  });

  it('reports tenants by status, plan and isolation, and process metrics', async () => {
    await env.admin('POST', `/admin/tenants/${b.slug}/deactivate`);
    const page = (await env.admin('GET', '/metrics')).body;
    expect(sample(page, 'tenantry_tenants', { status: 'active', plan: 'none', isolation: 'row' })).toBe(1);
    expect(sample(page, 'tenantry_tenants', { status: 'inactive', plan: 'none', isolation: 'schema' })).toBe(
      1,
    );
    expect(page).toContain('tenantry_process_resident_memory_bytes');
    if (driver === 'postgres') expect(page).toContain('tenantry_tenant_database_pools{state="max"}');
  });
});
