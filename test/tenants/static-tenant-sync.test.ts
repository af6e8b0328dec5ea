import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import type { TenantryConfig } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { ConfigError } from '../../src/errors.js';
import type { EngineLogger } from '../../src/runtime/engine-logger.js';
import { startServer } from '../../src/server.js';
import { Tenantry } from '../../src/tenantry.js';
import { ADMIN_TOKEN, DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const PLANS = {
  free: {
    features: ['basic'],
    limits: { requestsPerSecond: 5, burst: 10, maxConcurrent: 4, maxRows: 1000, statementTimeoutMs: 2000 },
  },
  pro: { features: ['basic', 'reports'], limits: { requestsPerSecond: 200, burst: 400 } },
};

/** The first file: two static tenants. */
const FIRST = {
  plans: PLANS,
  tenants: [
    { slug: 'initech', name: 'Initech', plan: 'pro', hosts: ['initech.example.com'] },
    { slug: 'globex', name: 'Globex', plan: 'free', limits: { maxRows: 50 } },
  ],
};

/** Initech renamed, on free, on a new host; globex takes initech's old host and drops its limits. */
const SECOND = {
  plans: PLANS,
  tenants: [
    { slug: 'initech', name: 'Initech LLC', plan: 'free', hosts: ['initech.com'] },
    { slug: 'globex', name: 'Globex', plan: 'free', hosts: ['initech.example.com'] },
  ],
};

interface LogLine {
  level: 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  message: string;
}

describe.each(DRIVERS)('static tenants and config reload on %s', (driver) => {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-sync-'));
  const lines: LogLine[] = [];
  const logger: EngineLogger = {
    info: (fields, message) => lines.push({ level: 'info', fields: fields as LogLine['fields'], message }),
    warn: (fields, message) => lines.push({ level: 'warn', fields: fields as LogLine['fields'], message }),
    error: (fields, message) => lines.push({ level: 'error', fields: fields as LogLine['fields'], message }),
  };
  let env: TestEnv;
  let files = 0;
  const keys = new Map<string, string>();
  /** A tenant outside the file, without limits, made early (its creation's NOTIFY echo is long past when it is used). */
  let busy: { key: string };

  /** The config `serve` would load from this file, on this env's database. */
  function fileConfig(document: unknown): TenantryConfig {
    files += 1;
    const file = join(dir, `tenantry-${files}.config.yaml`);
    writeFileSync(file, YAML.stringify(document));
    return loadConfig({
      file,
      cwd: process.cwd(),
      env: {
        TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
        ...(env?.databaseUrl ? { DATABASE_URL: env.databaseUrl } : {}),
      },
    });
  }

  async function row(slug: string) {
    const { rows } = await env.engine.db.owner.query<{
      id: string;
      name: string;
      status: string;
      managed_by: string | null;
      managed_fields: string[];
      config: Record<string, unknown>;
    }>(
      `SELECT id, name, status, managed_by, managed_fields, config FROM tenantry.tenants
        WHERE slug = $1 AND status <> 'deleted'`,
      [slug],
    );
    return rows[0];
  }

  const tenantInfo = (headers: Record<string, string>) =>
    env.inject({ method: 'GET', url: '/tenant-info', headers });

  const auditCount = async () =>
    (await env.engine.db.owner.query<{ n: number }>('SELECT count(*)::int AS n FROM tenantry.audit_log'))
      .rows[0]!.n;

  beforeAll(async () => {
    // The start config of `serve` with the first file (loaded before the env exists: PGlite or not).
    const start = loadConfig({
      file: (() => {
        const file = join(dir, 'start.config.yaml');
        writeFileSync(file, YAML.stringify(FIRST));
        return file;
      })(),
      env: {},
    });
    env = await startTestEnv(
      driver,
      { source: start.source, plans: start.plans, tenants: start.tenants },
      { logger },
    );
    busy = await env.createTenant('busy');
  });
  afterAll(async () => {
    await env?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('syncs at start: creates the declared tenants once, keys in the report only, audited as system:config', async () => {
    const report = await env.tenantry.syncStaticTenants();
    expect(report.created.map((entry) => entry.slug)).toEqual(['initech', 'globex']);
    expect(report.updated).toEqual([]);
    for (const { slug, apiKey } of report.created) {
      expect(apiKey.key).toMatch(/^tny_/);
      keys.set(slug, apiKey.key);
    }
    // The key is never in the log lines.
    expect(JSON.stringify(lines)).not.toContain(keys.get('initech'));

    const initech = await row('initech');
    expect(initech).toMatchObject({ name: 'Initech', status: 'active', config: { plan: 'pro' } });
    expect(initech?.managed_fields.sort()).toEqual(['hosts', 'name', 'plan', 'slug']);
    expect((await row('globex'))?.config).toEqual({ plan: 'free', limits: { maxRows: 50 } });

    const byKey = await tenantInfo({ 'x-api-key': keys.get('initech')! });
    expect(byKey.statusCode).toBe(200);
    expect(byKey.json()).toMatchObject({ slug: 'initech', config: { features: ['basic', 'reports'] } });
    const byHost = await tenantInfo({ host: 'initech.example.com' });
    expect(byHost.json()).toMatchObject({ slug: 'initech' });

    const audit = await env.tenantry.audit.list({ action: 'tenant.create' });
    const bySync = audit.entries.filter((entry) => entry.actor === 'system:config');
    expect(bySync.map((entry) => entry.target).sort()).toEqual(['globex', 'initech']);
    expect((await env.tenantry.audit.list({ action: 'config.sync' })).entries).toHaveLength(1);

    // Idempotent: a second sync (another process starting, the same file) does nothing.
    const before = await auditCount();
    const again = await env.tenantry.syncStaticTenants();
    expect(again).toEqual({ created: [], updated: [], activated: [], deactivated: [], skipped: [] });
    expect(await auditCount()).toBe(before);
  });

  it('updates the tenants to match a reloaded file, a host moving from one to the other', async () => {
    const report = await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect(report.changed).toEqual(['tenants']);
    expect(report.restartRequired).toEqual([]);
    expect(report.sync.created).toEqual([]);
    expect(
      Object.fromEntries(report.sync.updated.map((entry) => [entry.slug, [...entry.fields].sort()])),
    ).toEqual({ initech: ['hosts', 'name', 'plan'], globex: ['hosts', 'limits'] });
    expect(await row('initech')).toMatchObject({ name: 'Initech LLC', config: { plan: 'free' } });
    // globex declared limits before and no longer does: the override is gone, its plan's apply.
    expect((await row('globex'))?.config).toEqual({ plan: 'free' });
    expect((await tenantInfo({ host: 'initech.example.com' })).json()).toMatchObject({ slug: 'globex' });
    expect((await tenantInfo({ host: 'initech.com' })).json()).toMatchObject({ slug: 'initech' });

    const again = await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect(again.changed).toEqual([]);
    expect(again.sync.updated).toEqual([]);
  });

  it('deactivates, never deletes, a tenant the file stops declaring; declaring it again activates it', async () => {
    lines.length = 0;
    const report = await env.tenantry.reloadConfig(
      fileConfig({ plans: PLANS, tenants: [SECOND.tenants[0]] }),
    );
    expect(report.sync.deactivated).toEqual(['globex']);
    expect(await row('globex')).toMatchObject({ status: 'inactive', managed_by: null, managed_fields: [] });
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        fields: expect.objectContaining({ tenant: 'globex' }),
        message: expect.stringContaining('deactivated (not deleted)'),
      }),
    );
    const refused = await tenantInfo({ host: 'initech.example.com' });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('tenant_inactive');
    // No longer the file's: the admin API may change it.
    expect((await env.admin('PATCH', '/admin/tenants/globex', { name: 'Globex (old)' })).statusCode).toBe(
      200,
    );

    const back = await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect(back.sync.activated).toEqual(['globex']);
    expect(await row('globex')).toMatchObject({ status: 'active', name: 'Globex' });
    expect((await tenantInfo({ host: 'initech.example.com' })).statusCode).toBe(200);
  });

  it('refuses admin changes to what the file declares (409 naming the file), allows the rest', async () => {
    // The file that declared the tenant (here the start file; in production the one file in force).
    const file = basename((await row('initech'))!.managed_by!);
    expect(file).toMatch(/\.config\.yaml$/);
    const rename = await env.admin('PATCH', '/admin/tenants/initech', { name: 'Renamed' });
    expect(rename.statusCode).toBe(409);
    expect(rename.json()).toMatchObject({ code: 'conflict' });
    expect(rename.json().detail).toContain(file);
    expect(rename.json().detail).toContain('name');
    // The same value is no change.
    expect((await env.admin('PATCH', '/admin/tenants/initech', { name: 'Initech LLC' })).statusCode).toBe(
      200,
    );
    const replan = await env.admin('PATCH', '/admin/tenants/initech/config', { set: { plan: 'pro' } });
    expect(replan.statusCode).toBe(409);
    const host = await env.admin('POST', '/admin/tenants/initech/hosts', { host: 'extra.example.org' });
    expect(host.statusCode).toBe(409);
    expect((await env.admin('DELETE', '/admin/tenants/initech/hosts/initech.com')).statusCode).toBe(409);
    const deleted = await env.admin('DELETE', '/admin/tenants/initech');
    expect(deleted.statusCode).toBe(409);
    expect(deleted.json().detail).toMatch(/remove it there/);
    expect((await row('initech'))?.status).toBe('active');

    // Limits are not declared for initech: an operator may set them, and a sync keeps them.
    const limits = await env.admin('PATCH', '/admin/tenants/initech/config', {
      set: { 'limits.maxRows': 7 },
    });
    expect(limits.statusCode).toBe(200);
    // Deactivating is an operator's decision the file does not undo.
    expect((await env.admin('POST', '/admin/tenants/initech/deactivate')).statusCode).toBe(200);
    const report = await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect(report.sync.updated).toEqual([]);
    expect(report.sync.activated).toEqual([]);
    expect(await row('initech')).toMatchObject({
      status: 'inactive',
      config: { plan: 'free', limits: { maxRows: 7 } },
    });
    expect((await env.admin('POST', '/admin/tenants/initech/activate')).statusCode).toBe(200);
  });

  it('new plan values apply at once on reload, also to tenants cached by earlier requests', async () => {
    const key = keys.get('initech')!;
    expect((await tenantInfo({ 'x-api-key': key })).json().config.features).toEqual(['basic']);
    const richer = { ...PLANS, free: { ...PLANS.free, features: ['basic', 'exports'] } };
    const report = await env.tenantry.reloadConfig(fileConfig({ ...SECOND, plans: richer }));
    expect(report.changed).toEqual(['plans']);
    expect((await tenantInfo({ 'x-api-key': key })).json().config.features).toEqual(['basic', 'exports']);
    const view = await env.admin('GET', '/admin/tenants/initech/config');
    expect(view.json().effective.features).toEqual(['basic', 'exports']);
    await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect((await tenantInfo({ 'x-api-key': key })).json().config.features).toEqual(['basic']);
  });

  it('refuses a reload the database contradicts and changes nothing', async () => {
    const outside = await env.createTenant('outside', { plan: 'pro', hosts: ['outside.example.com'] });
    const running = env.tenantry.config;
    const tenantsBefore = (await env.admin('GET', '/admin/tenants?includeInactive=true')).body;

    // A plan still used by a tenant the file does not declare.
    const withoutPro = fileConfig({ ...SECOND, plans: { free: PLANS.free } });
    await expect(env.tenantry.reloadConfig(withoutPro)).rejects.toMatchObject({ key: 'plans' });
    expect(env.tenantry.config).toBe(running);

    // A host of a tenant the file does not declare; the entry before it is not created either.
    const stealing = fileConfig({
      ...SECOND,
      tenants: [
        ...SECOND.tenants,
        { slug: 'early', name: 'Early' },
        { slug: 'thief', name: 'Thief', hosts: ['outside.example.com'] },
      ],
    });
    const error = await env.tenantry.reloadConfig(stealing).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).key).toBe('tenants.3.hosts.0');
    expect((error as ConfigError).message).toContain('outside');
    expect(env.tenantry.config).toBe(running);
    expect(await row('early')).toBeUndefined();
    expect((await env.admin('GET', '/admin/tenants?includeInactive=true')).body).toBe(tenantsBefore);
    expect((await tenantInfo({ 'x-api-key': outside.key })).json().config.features).toEqual([
      'basic',
      'reports',
    ]);
  });

  it('logs keys that only a restart applies, and keeps their running values', async () => {
    lines.length = 0;
    const running = env.tenantry.config.server.bodyLimitBytes;
    const report = await env.tenantry.reloadConfig(
      fileConfig({ ...SECOND, server: { bodyLimitBytes: 4096 }, metrics: { tenantLabels: 3 } }),
    );
    expect(report.restartRequired).toEqual(['server.bodyLimitBytes', 'metrics.tenantLabels']);
    expect(env.tenantry.config.server.bodyLimitBytes).toBe(running);
    expect(env.tenantry.config.metrics.tenantLabels).toBe(50);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 'warn',
        message: expect.stringMatching(
          /server\.bodyLimitBytes, metrics\.tenantLabels.*takes effect at restart/,
        ),
      }),
    );
  });

  it('requests in flight while the config is reloaded all succeed', async () => {
    // Verified once, as a live key is: a reload keeps verified keys (no slow hash again).
    expect((await tenantInfo({ 'x-api-key': busy.key })).statusCode).toBe(200);
    const richer = { ...PLANS, pro: { ...PLANS.pro, features: ['basic', 'reports', 'exports'] } };
    const requests = Array.from({ length: 200 }, () => tenantInfo({ 'x-api-key': busy.key }));
    const reloads: Promise<unknown>[] = [];
    for (let i = 0; i < 6; i += 1)
      reloads.push(env.tenantry.reloadConfig(fileConfig({ ...SECOND, plans: i % 2 ? PLANS : richer })));
    const responses = await Promise.all(requests);
    await Promise.all(reloads);
    expect(responses.map((response) => response.statusCode)).toEqual(responses.map(() => 200));
  });

  it('refuses a reload whose settingsSchema a tenant does not fit, naming it; the running config stays', async () => {
    await env.createTenant('themed', { config: { settings: { theme: 'dark' } } });
    const running = env.tenantry.config;
    const tighter = { type: 'object', properties: { theme: { enum: ['light'] } } };
    await expect(
      env.tenantry.reloadConfig(fileConfig({ ...SECOND, settingsSchema: tighter })),
    ).rejects.toThrow(/tenant themed/);
    expect(env.tenantry.config).toBe(running);
    const fitting = { type: 'object', properties: { theme: { enum: ['light', 'dark'] } } };
    const accepted = await env.tenantry.reloadConfig(fileConfig({ ...SECOND, settingsSchema: fitting }));
    expect(accepted.changed).toContain('settingsSchema');
    await env.tenantry.reloadConfig(fileConfig(SECOND));
  });

  it('reserved slugs reload at once', async () => {
    const reserved = await env.tenantry.reloadConfig(
      fileConfig({ ...SECOND, tenancy: { reservedSlugs: ['newcomer'] } }),
    );
    expect(reserved.changed).toEqual(['tenancy.reservedSlugs']);
    const refused = await env.admin('POST', '/admin/tenants', { name: 'Newcomer', slug: 'newcomer' });
    expect(refused.statusCode).toBe(400);
    expect(refused.json().detail).toMatch(/reserved/);
    await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect(
      (await env.admin('POST', '/admin/tenants', { name: 'Newcomer', slug: 'newcomer' })).statusCode,
    ).toBe(201);
  });

  it('a file without tenants: leaves them alone; `tenants: []` deactivates every static tenant', async () => {
    const untouched = await env.tenantry.reloadConfig(fileConfig({ plans: PLANS }));
    expect(untouched.sync.deactivated).toEqual([]);
    expect((await row('initech'))?.status).toBe('active');
    const emptied = await env.tenantry.reloadConfig(fileConfig({ plans: PLANS, tenants: [] }));
    expect([...emptied.sync.deactivated].sort()).toEqual(['globex', 'initech']);
    expect((await row('initech'))?.status).toBe('inactive');
    const back = await env.tenantry.reloadConfig(fileConfig(SECOND));
    expect([...back.sync.activated].sort()).toEqual(['globex', 'initech']);
  });

  it.runIf(driver === 'postgres')(
    'processes starting at once sync under a lock: each tenant is created once',
    async () => {
      const config = fileConfig({
        ...SECOND,
        tenants: [...SECOND.tenants, { slug: 'twin', name: 'Twin', plan: 'pro' }],
      });
      const engines = await Promise.all([Tenantry.open({ config }), Tenantry.open({ config })]);
      try {
        const reports = await Promise.all(engines.map((engine) => engine.syncStaticTenants()));
        expect(reports.flatMap((report) => report.created.map((entry) => entry.slug))).toEqual(['twin']);
        const { rows } = await env.engine.db.owner.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM tenantry.tenants WHERE slug = 'twin'",
        );
        expect(rows[0]?.n).toBe(1);
      } finally {
        await Promise.all(engines.map((engine) => engine.close()));
      }
    },
  );
});

describe('serve with a settings schema some tenant does not fit', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-settings-start-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('starts and says which tenant does not fit (a reload would be refused instead)', async () => {
    const start = async (document: unknown, notices: string[]) => {
      const file = join(dir, `tenantry-${notices.length}-${Date.now()}.config.yaml`);
      writeFileSync(file, YAML.stringify(document));
      const config = loadConfig({
        file,
        env: { TENANTRY_DATA_DIR: join(dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN, PORT: '0' },
      });
      return startServer({
        config: { ...config, server: { ...config.server, host: '127.0.0.1' } },
        logger: false,
        notice: (message) => notices.push(message),
      });
    };
    const first = await start({}, []);
    await first.tenantry.tenants.create(
      { name: 'Themed', slug: 'themed-start', config: { settings: { theme: 'dark' } } },
      { context: { actor: { kind: 'system', id: 'test' } } },
    );
    await first.close();
    const notices: string[] = [];
    const second = await start(
      { settingsSchema: { type: 'object', properties: { theme: { enum: ['light'] } } } },
      notices,
    );
    try {
      expect(notices.some((line) => line.startsWith('warning:') && line.includes('themed-start'))).toBe(true);
      expect((await fetch(`${second.url}/healthz`)).status).toBe(200);
    } finally {
      await second.close();
    }
  });
});
