import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { eventually } from '../helpers/eventually.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

const PLANS = { basic: { features: ['basic'] }, pro: { features: ['basic', 'reports'] } };

describe.each(DRIVERS)('`tenantry serve` reloads its config file on SIGHUP, on %s', (driver) => {
  let dir: string;
  let file: string;
  let server: ServerProcess;
  let drop: (() => Promise<void>) | undefined;
  let key: string;

  const write = (document: unknown) =>
    writeFileSync(file, typeof document === 'string' ? document : YAML.stringify(document));
  const features = async (apiKey: string): Promise<string[]> => {
    const response = await fetch(`${server.url}/tenant-info`, { headers: { 'x-api-key': apiKey } });
    expect(response.status).toBe(200);
    return ((await response.json()) as { config: { features?: string[] } }).config.features ?? [];
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tenantry-reload-'));
    file = join(dir, 'tenantry.config.yaml');
    write({
      plans: PLANS,
      tenants: [{ slug: 'initech', name: 'Initech', plan: 'basic', hosts: ['initech.example.com'] }],
    });
    const database = driver === 'postgres' ? await createDatabase() : undefined;
    drop = database?.drop;
    server = await startServerProcess({
      TENANTRY_CONFIG: file,
      TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
      LOG_LEVEL: 'info',
      ...(database ? { DATABASE_URL: database.url } : { TENANTRY_DATA_DIR: join(dir, 'data') }),
    });
  });
  afterAll(async () => {
    await server?.stop();
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates the static tenants at start; the key goes to stderr once, never into the JSON logs', async () => {
    const shown = /Created tenant initech from the config file[^\n]*\n\n {2}(tny_\S+)/.exec(server.output());
    expect(shown).not.toBeNull();
    key = shown![1]!;
    const jsonLines = () =>
      server
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'));
    // The log (stdout) and the notice (stderr) are two streams: the log line may come second.
    for (
      let waited = 0;
      waited < 5_000 && !jsonLines().some((line) => line.includes('static tenants synced'));
      waited += 50
    )
      await new Promise((resolve) => setTimeout(resolve, 50));
    expect(jsonLines().some((line) => line.includes('static tenants synced'))).toBe(true);
    expect(jsonLines().some((line) => line.includes(key))).toBe(false);
    expect(await features(key)).toEqual(['basic']);
  });

  it('applies a rewritten file on SIGHUP, without a restart and without failing requests in flight', async () => {
    write({
      plans: PLANS,
      server: { bodyLimitBytes: 2048 },
      tenants: [
        { slug: 'initech', name: 'Initech', plan: 'pro', hosts: ['initech.example.com'] },
        { slug: 'hooli', name: 'Hooli' },
      ],
    });
    const inFlight = Array.from({ length: 40 }, () =>
      fetch(`${server.url}/tenant-info`, { headers: { 'x-api-key': key } }).then(
        (response) => response.status,
      ),
    );
    server.child.kill('SIGHUP');
    const statuses = await Promise.all(inFlight);
    expect(statuses).toEqual(statuses.map(() => 200));

    await eventually('the reloaded plan', async () => (await features(key)).includes('reports'));
    await eventually('the tenant the file adds', () => server.output().includes('Created tenant hooli'));
    expect(server.output()).toMatch(/server\.bodyLimitBytes changed; takes effect at restart/);
    expect(server.child.exitCode).toBeNull();
  });

  it('refuses an invalid file with an error line and keeps the running config', async () => {
    const before = server.output().length;
    write({ plans: PLANS, tenants: [{ slug: 'Not A Slug', name: 'Broken' }] });
    server.child.kill('SIGHUP');
    const line = await eventually('the refusal', () =>
      server
        .output()
        .slice(before)
        .split('\n')
        .find((text) => text.includes('config reload refused')),
    );
    expect(JSON.parse(line)).toMatchObject({ level: 50, key: 'tenants.0.slug' });

    // A file that does not even parse is refused the same way.
    write('plans: [unclosed');
    server.child.kill('SIGHUP');
    await eventually(
      'the second refusal',
      () => server.output().slice(before).split('config reload refused').length > 2,
    );
    expect(await features(key)).toEqual(['basic', 'reports']);
    const admin = await fetch(`${server.url}/admin/tenants/hooli`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(admin.status).toBe(200);
    expect(server.child.exitCode).toBeNull();
  });

  it('stops cleanly after reloads', async () => {
    expect(await server.stop()).toBe(0);
  });
});
