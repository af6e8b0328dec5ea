import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { planConfigReload } from '../../src/config/config-reload.js';
import { loadConfig } from '../../src/config/load-config.js';
import { ConfigError } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'tenantry-static-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PLANS = {
  free: {
    features: ['basic'],
    limits: { requestsPerSecond: 5, burst: 10, maxConcurrent: 4, maxRows: 1000, statementTimeoutMs: 2000 },
  },
  pro: { features: ['basic', 'reports'], limits: { requestsPerSecond: 200, burst: 400 } },
};

let files = 0;
function write(document: unknown): string {
  files += 1;
  const file = join(dir, `tenantry-${files}.config.yaml`);
  writeFileSync(file, typeof document === 'string' ? document : YAML.stringify(document));
  return file;
}

function load(document: unknown, env: Record<string, string> = {}) {
  return loadConfig({ file: write(document), env, cwd: dir });
}

function keyOf(document: unknown, env: Record<string, string> = {}): string {
  try {
    load(document, env);
  } catch (error) {
    if (error instanceof ConfigError) return error.key;
    throw error;
  }
  throw new Error('the config was accepted');
}

describe('static tenants in the config file', () => {
  it('loads the issue example: hosts normalised, declared fields recorded, frozen', () => {
    const config = load(`
plans:
  free: { features: [basic], limits: { requestsPerSecond: 5, burst: 10, maxConcurrent: 4, maxRows: 1000, statementTimeoutMs: 2000 } }
  pro: { features: [basic, reports], limits: { requestsPerSecond: 200, burst: 400 } }
tenants:
  - { slug: initech, name: Initech, plan: pro, hosts: [Initech.Example.com.] }
  - { slug: globex, name: "  Globex  ", limits: { maxRows: 50 } }
`);
    expect(config.tenants).toEqual([
      {
        slug: 'initech',
        name: 'Initech',
        isolation: undefined,
        hosts: ['initech.example.com'],
        config: { plan: 'pro' },
        fields: ['slug', 'name', 'hosts', 'plan'],
      },
      {
        slug: 'globex',
        name: 'Globex',
        isolation: undefined,
        hosts: undefined,
        config: { limits: { maxRows: 50 } },
        fields: ['slug', 'name', 'limits'],
      },
    ]);
    expect(Object.isFrozen(config.tenants?.[0]?.config)).toBe(true);
  });

  it('a file without tenants: manages none; an empty list manages all of none', () => {
    expect(load({ plans: PLANS }).tenants).toBeUndefined();
    expect(load({ tenants: [] }).tenants).toEqual([]);
  });

  it('refuses invalid entries with the registry rules, naming the key', () => {
    const ok = { slug: 'acme', name: 'Acme' };
    expect(keyOf({ tenants: [ok, { slug: 'beta', name: 'B' }, { slug: 'Bad Slug', name: 'X' }] })).toBe(
      'tenants.2.slug',
    );
    expect(keyOf({ tenants: [{ slug: 'admin', name: 'Reserved' }] })).toBe('tenants.0.slug');
    expect(keyOf({ tenancy: { reservedSlugs: ['acme'] }, tenants: [ok] })).toBe('tenants.0.slug');
    expect(keyOf({ tenants: [ok, { slug: 'acme', name: 'Again' }] })).toBe('tenants.1.slug');
    expect(keyOf({ tenants: [{ slug: 'acme', name: '   ' }] })).toBe('tenants.0.name');
    expect(keyOf({ tenants: [{ slug: 'acme' }] })).toBe('tenants.0.name');
    expect(keyOf({ tenants: [{ ...ok, colour: 'red' }] })).toBe('tenants.0.colour');
    expect(keyOf({ plans: PLANS, tenants: [{ ...ok, plan: 'gold' }] })).toBe('tenants.0.plan');
    expect(keyOf({ tenants: [{ ...ok, limits: { requestsPerSecnd: 5 } }] })).toBe(
      'tenants.0.limits.requestsPerSecnd',
    );
    expect(keyOf({ tenants: [{ ...ok, hosts: ['a.example.com', 'not a host'] }] })).toBe('tenants.0.hosts.1');
    expect(
      keyOf({ server: { baseDomain: 'example.com' }, tenants: [{ ...ok, hosts: ['example.com'] }] }),
    ).toBe('tenants.0.hosts.0');
    expect(
      keyOf({
        tenants: [
          { ...ok, hosts: ['shop.example.com'] },
          { slug: 'beta', name: 'Beta', hosts: ['beta.example.com', 'SHOP.example.com'] },
        ],
      }),
    ).toBe('tenants.1.hosts.1');
    // `beta.<baseDomain>` is the address of the tenant whose slug is beta.
    expect(
      keyOf({
        server: { baseDomain: 'example.com' },
        tenants: [
          { ...ok, hosts: ['beta.example.com'] },
          { slug: 'beta', name: 'Beta' },
        ],
      }),
    ).toBe('tenants.0.hosts.0');
    expect(keyOf({ tenants: [{ ...ok, isolation: 'database' }] })).toBe('tenants.0.isolation');
    expect(
      keyOf({
        settingsSchema: { type: 'object', properties: { theme: { enum: ['light', 'dark'] } } },
        tenants: [{ ...ok, settings: { theme: 'pink' } }],
      }),
    ).toBe('tenants.0.settings.theme');
  });

  it('accepts database isolation when the database is PostgreSQL', () => {
    const config = load(
      { tenants: [{ slug: 'acme', name: 'Acme', isolation: 'database' }] },
      { DATABASE_URL: 'postgres://localhost/x' },
    );
    expect(config.tenants?.[0]?.isolation).toBe('database');
  });

  it('`tenantry serve` with an invalid static tenant exits 2 naming the key', async () => {
    const file = write({
      tenants: [
        { slug: 'acme', name: 'Acme' },
        { slug: 'x', name: 'Too short' },
      ],
    });
    const result = await runCli(['serve', '--config', file], { TENANTRY_DATA_DIR: join(dir, 'data') });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('tenants.1.slug');
  });
});

describe('planning a reload', () => {
  const base = { plans: PLANS, tenants: [{ slug: 'acme', name: 'Acme', plan: 'free' }] };

  it('takes plans, settings schema, tenancy defaults and static tenants; keeps the rest', () => {
    const current = load(base);
    const next = load({
      ...base,
      plans: { ...PLANS, pro: { features: ['basic', 'reports', 'exports'] } },
      tenancy: { defaultPlan: 'pro', statementTimeoutMs: 9000 },
      server: { bodyLimitBytes: 4096, port: 4000 },
      metrics: { public: true },
      tenants: [{ slug: 'acme', name: 'Acme Inc', plan: 'pro' }],
    });
    const plan = planConfigReload(current, next);
    expect([...plan.changed].sort()).toEqual(['plans', 'tenancy.defaultPlan', 'tenants']);
    expect([...plan.restartRequired].sort()).toEqual([
      'metrics.public',
      'server.bodyLimitBytes',
      'server.port',
      'tenancy.statementTimeoutMs',
    ]);
    expect(plan.config.plans.pro?.features).toEqual(['basic', 'reports', 'exports']);
    expect(plan.config.tenancy.defaultPlan).toBe('pro');
    expect(plan.config.tenants?.[0]?.name).toBe('Acme Inc');
    // The running values of what needs a restart stay.
    expect(plan.config.server).toBe(current.server);
    expect(plan.config.metrics.public).toBe(false);
    expect(plan.config.tenancy.statementTimeoutMs).toBe(current.tenancy.statementTimeoutMs);
    // A new frozen value; the running one is untouched.
    expect(Object.isFrozen(plan.config)).toBe(true);
    expect(Object.isFrozen(plan.config.tenancy)).toBe(true);
    expect(current.tenancy.defaultPlan).toBeUndefined();
    expect(current.plans.pro?.features).toEqual(['basic', 'reports']);
  });

  it('an identical file changes nothing', () => {
    const plan = planConfigReload(load(base), load(base));
    expect(plan.changed).toEqual([]);
    expect(plan.restartRequired).toEqual([]);
  });

  it('entities are compared as a whole and need a restart (and tenantry migrate)', () => {
    const entities = { projects: { scope: 'tenant', fields: { name: { type: 'text' } } } };
    const plan = planConfigReload(
      load({ ...base, entities }),
      load({
        ...base,
        entities: {
          projects: { scope: 'tenant', fields: { name: { type: 'text' }, due: { type: 'date' } } },
        },
      }),
    );
    expect(plan.restartRequired).toEqual(['entities']);
    expect(plan.changed).toEqual([]);
  });
});

describe('server.trustProxy in the config file', () => {
  it('takes true, a hop count, or proxy addresses and networks', () => {
    expect(load({ server: { trustProxy: true } }).server.trustProxy).toBe(true);
    expect(load({ server: { trustProxy: 2 } }).server.trustProxy).toBe(2);
    const list = ['10.0.0.0/8', '192.168.1.10', 'fd00::/8', 'loopback'];
    expect(load({ server: { trustProxy: list } }).server.trustProxy).toEqual(list);
  });

  it('refuses what names no proxy, naming the entry', () => {
    expect(keyOf({ server: { trustProxy: ['10.0.0.0/8', 'proxy.internal'] } })).toBe('server.trustProxy/1');
    expect(keyOf({ server: { trustProxy: ['10.0.0.0/33'] } })).toBe('server.trustProxy/0');
    expect(keyOf({ server: { trustProxy: 0 } })).toContain('trustProxy');
  });
});
