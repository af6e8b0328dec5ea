import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

describe.each(DRIVERS)('config changes in the audit trail, on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, { plans: { pro: { limits: { maxRows: 100 } } } });
  });
  afterAll(async () => {
    await env?.close();
  });

  const entriesOf = async (slug: string, action: string) =>
    (await env.admin('GET', `/admin/audit?tenant=${slug}&action=${action}`)).json().entries as {
      details: { changes?: { path: string; from: unknown; to: unknown }[] };
    }[];

  it('records each path with its old and new value; a secret-looking setting only as changed', async () => {
    const tenant = await env.createTenant('audited-config');
    const first = await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, {
      set: { 'limits.maxRows': 5, 'settings.apiToken': 'sk_live_do_not_log', 'settings.theme': 'dark' },
    });
    expect(first.statusCode, first.body).toBe(200);
    const second = await env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, {
      set: { 'limits.maxRows': 7, plan: 'pro' },
      unset: ['settings.theme'],
    });
    expect(second.statusCode, second.body).toBe(200);
    const [latest, earlier] = await entriesOf(tenant.slug, 'tenant.config');
    expect(earlier!.details.changes).toEqual([
      { path: 'limits.maxRows', from: null, to: 5 },
      { path: 'settings.apiToken', from: null, to: '(redacted)' },
      { path: 'settings.theme', from: null, to: 'dark' },
    ]);
    expect(latest!.details.changes).toEqual([
      { path: 'limits.maxRows', from: 5, to: 7 },
      { path: 'plan', from: null, to: 'pro' },
      { path: 'settings.theme', from: 'dark', to: null },
    ]);
    const all = await env.admin('GET', `/admin/audit?tenant=${tenant.slug}`);
    expect(all.body).not.toContain('sk_live_do_not_log');
  });

  it('a config replaced by an update is recorded the same way', async () => {
    const tenant = await env.createTenant('audited-update');
    const updated = await env.admin('PATCH', `/admin/tenants/${tenant.slug}`, {
      config: { limits: { maxRows: 3 } },
    });
    expect(updated.statusCode, updated.body).toBe(200);
    const [entry] = await entriesOf(tenant.slug, 'tenant.update');
    expect(entry!.details.changes).toEqual([{ path: 'limits.maxRows', from: null, to: 3 }]);
  });
});
