import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminTokenGuard } from '../../src/auth/admin-token.js';
import { defineConfig } from '../../src/config/load-config.js';
import { openPglite } from '../../src/db/pglite-driver.js';
import { buildApp } from '../../src/http/app.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { ADMIN_TOKEN } from '../helpers/harness.js';

describe('operations: logs, readiness, internal errors', () => {
  const lines: Record<string, unknown>[] = [];
  let tenantry: Tenantry;
  let app: Awaited<ReturnType<typeof buildApp>>;
  let key: string;

  beforeAll(async () => {
    const config = defineConfig({ adminToken: ADMIN_TOKEN });
    tenantry = await Tenantry.open({ config, database: await openPglite() });
    const { guard } = await AdminTokenGuard.setUp(engineOf(tenantry).db.owner, config.adminToken);
    const stream = new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    app = await buildApp({ tenantry, adminGuard: guard, logger: { level: 'info', stream } });
    const created = await app.inject({
      method: 'POST',
      url: '/admin/tenants',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { name: 'Logged', slug: 'logged' },
    });
    key = created.json().apiKey.key;
  });
  afterAll(async () => {
    await app?.close();
    await tenantry?.close();
    if (tenantry)
      await engineOf(tenantry)
        .db.close()
        .catch(() => undefined);
  });

  it('writes structured log lines carrying the request id, and the tenant once resolved', async () => {
    const response = await app.inject({
      url: '/tenant-info',
      headers: { 'x-api-key': key, 'x-request-id': 'trace-0001' },
    });
    expect(response.headers['x-request-id']).toBe('trace-0001');
    const ofRequest = lines.filter((line) => line.reqId === 'trace-0001');
    expect(ofRequest.length).toBeGreaterThan(0);
    const tenantId = response.json().id;
    expect(ofRequest.some((line) => line.tenantId === tenantId && line.tenantSlug === 'logged')).toBe(true);
    // Secrets never reach the log.
    expect(JSON.stringify(lines)).not.toContain(key);
  });

  it('ignores a request id that is not harmless', async () => {
    const response = await app.inject({
      url: '/healthz',
      headers: { 'x-request-id': 'bad id\nwith newline' },
    });
    // A fresh id instead (a UUID: its hex digits may well spell "bad", so match its shape).
    expect(response.headers['x-request-id']).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  });

  it('is not ready when the database is gone, and answers internal errors without details', async () => {
    expect((await app.inject({ url: '/readyz' })).statusCode).toBe(200);
    await engineOf(tenantry).db.close();
    const ready = await app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().code).toBe('unavailable');
    const failing = await app.inject({
      url: '/admin/tenants',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(failing.statusCode).toBe(500);
    expect(failing.json()).toMatchObject({ code: 'internal', detail: 'an internal error occurred' });
    expect(failing.body).not.toMatch(/closed|PGlite|stack|\.ts:/i);
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });
});
