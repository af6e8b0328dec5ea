import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli } from '../helpers/cli.js';
import { eventually } from '../helpers/eventually.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
const adminJson = { ...admin, 'content-type': 'application/json' };

describe.runIf(DRIVERS.includes('postgres'))('two server processes on one PostgreSQL', () => {
  let a: ServerProcess;
  let b: ServerProcess;
  let env: Record<string, string>;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const database = await createDatabase();
    drop = database.drop;
    env = { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
    [a, b] = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await drop?.();
  });

  // fetch() drops a Host header (a forbidden header name), so this uses node:http directly.
  const tenantInfo = (server: ServerProcess, headers: Record<string, string>) =>
    new Promise<number>((resolve, reject) => {
      const req = request(`${server.url}/tenant-info`, { headers, agent: false }, (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });

  it('a key regenerated in one process stops working in the other too', async () => {
    const created = await fetch(`${a.url}/admin/tenants`, {
      method: 'POST',
      headers: adminJson,
      body: JSON.stringify({ name: 'Shared', slug: 'shared', hosts: ['shared.example.com'] }),
    }).then((response) => response.json() as Promise<{ apiKey: { key: string } }>);
    const oldKey: string = created.apiKey.key;
    // Both processes have verified (and cached) the key.
    expect(await tenantInfo(a, { 'x-api-key': oldKey })).toBe(200);
    expect(await tenantInfo(b, { 'x-api-key': oldKey })).toBe(200);

    const regenerated = await fetch(`${a.url}/admin/tenants/shared/regenerate-api-key`, {
      method: 'POST',
      headers: admin,
    });
    const newKey = ((await regenerated.json()) as { key: string }).key;
    expect(await tenantInfo(a, { 'x-api-key': oldKey })).toBe(401);
    await eventually(
      'the other process refuses the old key',
      async () => (await tenantInfo(b, { 'x-api-key': oldKey })) === 401,
    );
    expect(await tenantInfo(b, { 'x-api-key': newKey })).toBe(200);
  });

  it('a deactivation by the CLI reaches both running servers', async () => {
    const created = await fetch(`${b.url}/admin/tenants`, {
      method: 'POST',
      headers: adminJson,
      body: JSON.stringify({ name: 'Cli', slug: 'cli-made', hosts: ['cli.example.com'] }),
    }).then((response) => response.json() as Promise<{ apiKey: { key: string } }>);
    const key: string = created.apiKey.key;
    for (const server of [a, b]) {
      expect(await tenantInfo(server, { 'x-api-key': key })).toBe(200);
      expect(await tenantInfo(server, { host: 'cli.example.com' })).toBe(200);
    }
    const result = await spawnCli(['tenants', 'deactivate', 'cli-made'], env);
    expect(result.code, result.stderr).toBe(0);
    for (const server of [a, b]) {
      await eventually(
        'the key refused',
        async () => (await tenantInfo(server, { 'x-api-key': key })) === 401,
      );
      await eventually(
        'the host refused',
        async () => (await tenantInfo(server, { host: 'cli.example.com' })) === 403,
      );
    }
  });

  it('on SIGTERM a server finishes the request in flight, then exits 0', async () => {
    const body = JSON.stringify({ name: 'Late', slug: 'late-arrival' });
    const pending = new Promise<number>((resolve, reject) => {
      const req = request(
        `${a.url}/admin/tenants`,
        { method: 'POST', headers: { ...adminJson, 'content-length': String(Buffer.byteLength(body)) } },
        (response) => {
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.write(body.slice(0, 10));
      setTimeout(() => req.end(body.slice(10)), 500);
    });
    await new Promise((resolve) => setTimeout(resolve, 150));
    const exit = a.stop();
    expect(await pending).toBe(201);
    expect(await exit).toBe(0);
    // The tenant really exists: the other process sees it.
    const shown = await fetch(`${b.url}/admin/tenants/late-arrival`, { headers: admin });
    expect(shown.status).toBe(200);
  });
});
