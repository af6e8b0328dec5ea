import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load-config.js';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { ConfigError } from '../../src/errors.js';
import { requireFeature, tenantryPlugin } from '../../src/fastify.js';
import { FleetFixture } from '../helpers/fleet.js';
import { ADMIN_TOKEN, DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const PLANS = {
  free: {
    features: ['basic'],
    limits: { requestsPerSecond: 5, burst: 10, statementTimeoutMs: 2000 },
    branding: { displayName: 'Free tier' },
    settings: { theme: 'light' },
  },
  pro: {
    features: ['basic', 'reports'],
    limits: { requestsPerSecond: 200, burst: 400 },
  },
};

const SETTINGS_SCHEMA = {
  type: 'object',
  properties: { theme: { enum: ['light', 'dark'] }, seats: { type: 'integer', minimum: 1 } },
  additionalProperties: false,
};

const ENTITIES = normaliseEntities({
  projects: { scope: 'tenant', fields: { name: { type: 'text', required: true } } },
  reports: { scope: 'tenant', feature: 'reports', fields: { title: { type: 'text' } } },
});

describe.each(DRIVERS)('plans, tenant configuration and features, on %s', (driver) => {
  let env: TestEnv;
  let tenant: { id: string; slug: string; key: string };

  const config = async (body?: unknown) =>
    body === undefined
      ? env.admin('GET', `/admin/tenants/${tenant.slug}/config`)
      : env.admin('PATCH', `/admin/tenants/${tenant.slug}/config`, body);
  const reports = () =>
    env.inject({
      method: 'POST',
      url: '/api/v1/reports',
      headers: { 'x-api-key': tenant.key },
      payload: { title: 'Q3' },
    });

  beforeAll(async () => {
    env = await startTestEnv(driver, {
      entities: ENTITIES,
      plans: PLANS,
      settingsSchema: SETTINGS_SCHEMA,
      tenancy: { defaultPlan: 'free' },
    });
    tenant = await env.createTenant('planned');
  });
  afterAll(async () => {
    await env.close();
  });

  it('a tenant created without a plan gets the default plan, and its effective configuration', async () => {
    const response = await config();
    expect(response.statusCode, response.body).toBe(200);
    expect(response.json()).toEqual({
      plan: 'free',
      overrides: { plan: 'free' },
      effective: {
        plan: 'free',
        features: ['basic'],
        limits: { requestsPerSecond: 5, burst: 10, statementTimeoutMs: 2000 },
        branding: { displayName: 'Free tier' },
        settings: { theme: 'light' },
      },
    });
    const info = await env.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } });
    expect(info.json().config).toEqual({ features: ['basic'], branding: { displayName: 'Free tier' } });
    expect(info.body).not.toContain('requestsPerSecond');
    expect(info.body).not.toContain('theme');
  });

  it("the plan's statement timeout applies to the tenant's transactions", async () => {
    const { rows } = await env.tenantry.withTenant(tenant.id, (db) => db.query('SHOW statement_timeout'));
    expect(rows[0]).toEqual({ statement_timeout: '2s' });
  });

  it('an entity that needs a feature answers 403 feature_disabled until the plan has it', async () => {
    const refused = await reports();
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'feature_disabled' });
    expect(refused.json().detail).toContain('"reports"');
    const listed = await env.inject({ url: '/api/v1/reports', headers: { 'x-api-key': tenant.key } });
    expect(listed.statusCode).toBe(403);

    const upgraded = await config({ set: { plan: 'pro' } });
    expect(upgraded.statusCode, upgraded.body).toBe(200);
    expect(upgraded.json().effective.features).toEqual(['basic', 'reports']);
    expect((await reports()).statusCode).toBe(201);
  });

  it('overrides replace the plan value one key at a time, and unsetting restores it', async () => {
    const set = await config({ set: { 'limits.requestsPerSecond': 50, features: ['basic'] } });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json().effective.limits).toEqual({ requestsPerSecond: 50, burst: 400 });
    expect((await reports()).statusCode).toBe(403);
    const unset = await config({ unset: ['features', 'limits.requestsPerSecond'] });
    expect(unset.json().effective).toMatchObject({
      features: ['basic', 'reports'],
      limits: { requestsPerSecond: 200, burst: 400 },
    });
    expect(unset.json().overrides).toEqual({ plan: 'pro' });
    expect((await reports()).statusCode).toBe(201);
  });

  it('refuses bad configuration with the field named, and changes nothing', async () => {
    const before = (await config()).json();
    const cases: [unknown, string][] = [
      [{ set: { plan: 'platinum' } }, 'plan'],
      [{ set: { 'limits.requestsPerSecnd': 5 } }, 'limits'],
      [{ set: { 'limits.burst': 'lots' } }, 'limits'],
      [{ set: { 'settings.theme': 'blue' } }, 'settings.theme'],
      [{ set: { 'settings.seats': 0 } }, 'settings.seats'],
      [{ set: { 'branding.logoUrl': 'http://insecure.example.com/logo.png' } }, 'branding'],
      [{ set: { 'nonsense.path': 1 } }, 'path'],
      [{ set: { 'limits.': 1 } }, 'path'],
      [{ unset: ['__proto__.polluted'] }, 'path'],
      [{ set: { 'settings.__proto__.polluted': 'yes' } }, 'path'],
      [{ set: { 'settings.constructor': 'yes' } }, 'path'],
      [{ set: { 'branding.prototype': 'x' } }, 'path'],
      [{ set: { plan: 'pro' }, extra: true }, ''],
    ];
    for (const [body, field] of cases) {
      const response = await config(body);
      expect(response.statusCode, JSON.stringify(body)).toBe(400);
      expect(response.json().code).toBe('validation_failed');
      if (field) expect(String(response.json().field), JSON.stringify(body)).toContain(field);
    }
    expect((await config()).json()).toEqual(before);
    const unknownPlan = await env.admin('POST', '/admin/tenants', {
      name: 'X',
      slug: 'no-plan',
      plan: 'gold',
    });
    expect(unknownPlan.statusCode).toBe(400);
    expect(unknownPlan.json()).toMatchObject({ code: 'validation_failed', field: 'plan' });
    expect((await env.admin('GET', '/admin/tenants/no-plan')).statusCode).toBe(404);
  });

  it('config and usage routes: admins only, a missing tenant is 404, a huge body is 413, nothing changes', async () => {
    for (const url of [`/admin/tenants/${tenant.slug}/config`, `/admin/tenants/${tenant.slug}/usage`]) {
      // A tenant's own key is no admin token, and neither is a forged one.
      for (const headers of [{ 'x-api-key': tenant.key }, { authorization: `Bearer ${tenant.key}` }, {}]) {
        expect((await env.inject({ url, headers })).statusCode, url).toBe(401);
      }
    }
    for (const url of ['/admin/tenants/no-such-tenant/config', '/admin/tenants/no-such-tenant/usage']) {
      const missing = await env.admin('GET', url);
      expect(missing.statusCode).toBe(404);
      expect(missing.json().code).toBe('tenant_not_found');
    }
    const before = (await config()).json();
    const huge = await config({ set: { 'settings.theme': 'x'.repeat(2 * 1024 * 1024) } });
    expect(huge.statusCode).toBe(413);
    const notJson = await env.inject({
      method: 'PATCH',
      url: `/admin/tenants/${tenant.slug}/config`,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      payload: '{"set": ',
    });
    expect(notJson.statusCode).toBe(400);
    expect((await config()).json()).toEqual(before);
  });

  it('hand-written routes can require a feature; request.tenant.hasFeature answers', async () => {
    const other = await env.createTenant('planned-free');
    const app: FastifyInstance = Fastify();
    try {
      await app.register(tenantryPlugin, { tenantry: env.tenantry });
      await app.register(
        app.tenantScope((scope) => {
          scope.get('/insights', { preHandler: requireFeature('reports') }, async (request) => ({
            reports: request.tenant?.hasFeature('reports'),
            basic: request.tenant?.hasFeature('basic'),
          }));
        }),
      );
      const allowed = await app.inject({ url: '/insights', headers: { 'x-api-key': tenant.key } });
      expect(allowed.statusCode, allowed.body).toBe(200);
      expect(allowed.json()).toEqual({ reports: true, basic: true });
      const refused = await app.inject({ url: '/insights', headers: { 'x-api-key': other.key } });
      expect(refused.statusCode).toBe(403);
      expect(refused.json().code).toBe('feature_disabled');
    } finally {
      await app.close();
    }
  });
});

describe('plans in the config file', () => {
  const fleet = new FleetFixture('pglite');
  const write = (name: string, content: Record<string, unknown>) => {
    const path = join(fleet.dir, `${name}.yaml`);
    writeFileSync(path, YAML.stringify(content));
    return path;
  };

  afterAll(async () => {
    await fleet.close();
  });

  it('refuses a default plan that names no plan, an unknown limit and an invalid settings schema', () => {
    const load = (content: Record<string, unknown>) => () =>
      loadConfig({ file: write('bad', content), env: {}, overrides: {} });
    expect(load({ plans: PLANS, tenancy: { defaultPlan: 'gold' } })).toThrow(ConfigError);
    expect(load({ plans: PLANS, tenancy: { defaultPlan: 'gold' } })).toThrow(/tenancy\.defaultPlan/);
    expect(load({ plans: { free: { limits: { requestsPerMinute: 5 } } } })).toThrow(/plans\.free\.limits/);
    expect(load({ settingsSchema: { type: 'no-such-type' } })).toThrow(/settingsSchema/);
    // A plan's settings are its tenants' defaults: a wrong type there is refused, naming it...
    const schema = { ...SETTINGS_SCHEMA, required: ['seats'] };
    expect(load({ settingsSchema: schema, plans: { free: { settings: { theme: 'purple' } } } })).toThrow(
      /plans\.free\.settings\.theme/,
    );
    // ...while a required property may be left to each tenant.
    expect(load({ settingsSchema: schema, plans: { free: { settings: { theme: 'dark' } } } })).not.toThrow();
    // Limits have an upper bound; the concurrency lease a lower one.
    expect(load({ plans: { free: { limits: { requestsPerSecond: 1e308 } } } })).toThrow(
      /plans\.free\.limits/,
    );
    expect(load({ rateLimits: { concurrencyLeaseSeconds: 1 } })).toThrow(/concurrencyLeaseSeconds/);
  });

  it('the CLI creates with --plan and gets, sets and unsets values by path', async () => {
    await fleet.start();
    const path = write('plans', { plans: PLANS, settingsSchema: SETTINGS_SCHEMA });
    // Only init-db and serve create the embedded database.
    expect((await fleet.cli(['init-db'], path)).code).toBe(0);
    const created = await fleet.cli(['tenants', 'create', 'Acme', 'acme', '--plan', 'pro', '--json'], path);
    expect(created.code, created.stderr).toBe(0);
    const get = (key: string) => fleet.cli(['tenants', 'config', 'get', 'acme', key], path);
    expect((await get('limits.requestsPerSecond')).stdout.trim()).toBe('200');
    const set = await fleet.cli(['tenants', 'config', 'set', 'acme', 'limits.requestsPerSecond', '50'], path);
    expect(set.code, set.stderr).toBe(0);
    expect((await get('limits.requestsPerSecond')).stdout.trim()).toBe('50');
    expect((await get('plan')).stdout.trim()).toBe('pro');
    const theme = await fleet.cli(['tenants', 'config', 'set', 'acme', 'settings.theme', 'dark'], path);
    expect(theme.code, theme.stderr).toBe(0);
    expect((await get('settings.theme')).stdout.trim()).toBe('dark');
    const bad = await fleet.cli(['tenants', 'config', 'set', 'acme', 'settings.theme', 'blue'], path);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('settings.theme');
    const unset = await fleet.cli(['tenants', 'config', 'unset', 'acme', 'limits.requestsPerSecond'], path);
    expect(unset.code, unset.stderr).toBe(0);
    expect((await get('limits.requestsPerSecond')).stdout.trim()).toBe('200');
    const missing = await get('branding.displayName');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('is not set');

    // Each change is audited, and the audit can be filtered by action, actor and time range.
    const audit = (...args: string[]) => fleet.cli(['audit', '--json', ...args], path);
    const changes = await audit('--action', 'tenant.config', '--since', '2000-01-01T00:00:00Z');
    expect(changes.code, changes.stderr).toBe(0);
    const entries = JSON.parse(changes.stdout) as { action: string; actor: string; outcome: string }[];
    expect(entries.filter((entry) => entry.outcome === 'success')).toHaveLength(3);
    const actor = entries[0]!.actor;
    expect(JSON.parse((await audit('--actor', actor, '--action', 'tenant.config')).stdout).length).toBe(
      entries.length,
    );
    expect(JSON.parse((await audit('--actor', 'cli:nobody')).stdout)).toEqual([]);
    expect(JSON.parse((await audit('--until', '2000-01-01T00:00:00Z')).stdout)).toEqual([]);
    const badTime = await audit('--since', 'last tuesday');
    expect(badTime.code).toBe(1);
    expect(badTime.stderr).toContain('since must be an ISO 8601 date-time');
  });
});
