import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { ADMIN_TOKEN, DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

/** Sends raw bytes and reads the whole answer (the server closes the connection after it). */
function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    socket.on('close', () => resolve(answer));
    socket.on('error', (error) => (answer ? resolve(answer) : reject(error)));
  });
}

/** JSON text of a value nested `levels` arrays deep (built as text: stringifying it would overflow). */
function nested(levels: number): string {
  return `${'['.repeat(levels)}"deep"${']'.repeat(levels)}`;
}

describe.each(DRIVERS)('requests every route refuses cleanly, on %s', (driver) => {
  let env: TestEnv;
  let tenant: { id: string; slug: string; key: string };
  let projectId: string;
  const asTenant = (method: 'GET' | 'POST', url: string, payload?: unknown) =>
    env.inject({
      method,
      url,
      headers: { 'x-api-key': tenant.key, 'content-type': 'application/json' },
      ...(payload === undefined
        ? {}
        : { payload: typeof payload === 'string' ? payload : JSON.stringify(payload) }),
    });

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    tenant = await env.createTenant('guards');
    const project = await asTenant('POST', '/api/v1/projects', { name: 'p' });
    expect(project.statusCode, project.body).toBe(201);
    projectId = project.json().id;
  });
  afterAll(async () => env?.close());

  const count = async (url: string) => (await asTenant('GET', url)).json().items.length as number;

  it('a body nested deeper than 64 levels is a 400 naming the body, and nothing is written', async () => {
    const before = await count('/api/v1/tasks');
    const deep = await asTenant(
      'POST',
      '/api/v1/tasks',
      `{"project":"${projectId}","title":"t","meta":${nested(4500)}}`,
    );
    expect(deep.statusCode, deep.body).toBe(400);
    expect(deep.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(deep.json()).toMatchObject({ code: 'validation_failed', field: '(body)' });
    const settings = await env.inject({
      method: 'POST',
      url: '/admin/tenants',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      payload: `{"name":"Deep","slug":"deep-settings","config":{"settings":{"k":${nested(4000)}}}}`,
    });
    expect(settings.statusCode, settings.body).toBe(400);
    expect((await env.admin('GET', '/admin/tenants/deep-settings')).statusCode).toBe(404);
    // Nesting a real document needs is fine.
    const fine = await asTenant(
      'POST',
      '/api/v1/tasks',
      `{"project":"${projectId}","title":"t","meta":${nested(40)}}`,
    );
    expect(fine.statusCode, fine.body).toBe(201);
    expect(await count('/api/v1/tasks')).toBe(before + 1);
  });

  it('the library refuses such nesting too, in a json field and in tenant settings', async () => {
    let deep: unknown = 'deep';
    for (let i = 0; i < 4500; i++) deep = [deep];
    const view = await env.engine.schemas.loadView(await env.engine.store.get(tenant.id));
    const tasks = view.repository('tasks')!;
    await expect(
      env.tenantry.withTenant(tenant.id, (db) =>
        tasks.create(db, { project: projectId, title: 't', meta: deep }),
      ),
    ).rejects.toMatchObject({ code: 'validation_failed', field: 'meta' });
    await expect(
      env.tenantry.tenants.create(
        { name: 'Deep', slug: 'deep-library', config: { settings: { k: deep } } },
        { context: { actor: { kind: 'system', id: 'test' } } },
      ),
    ).rejects.toMatchObject({ code: 'validation_failed', field: 'config' });
    expect((await env.admin('GET', '/admin/tenants/deep-library')).statusCode).toBe(404);
  });

  it('a string that is not valid Unicode (a lone surrogate) is a 400 before anything is written', async () => {
    const clients = async () => (await env.admin('GET', '/admin/clients')).json().length as number;
    const before = await clients();
    for (const body of ['{"name":"\\ud800"}', '{"name":"x\\udfffy"}', '{"\\ud800":"x"}']) {
      const refused = await asTenant('POST', '/api/v1/clients', body);
      expect(refused.statusCode, body).toBe(400);
      expect(refused.json()).toMatchObject({ code: 'validation_failed', field: '(body)' });
    }
    expect(await clients()).toBe(before);
    // A well-formed pair (an emoji, escaped) is text like any other.
    const pair = await asTenant('POST', '/api/v1/projects', '{"name":"rocket \\ud83d\\ude80"}');
    expect(pair.statusCode, pair.body).toBe(201);
    expect(pair.json().name).toBe('rocket \u{1F680}');
  });

  it('a key may not expire after the year 9999, whatever the offset', async () => {
    const far = await asTenant('POST', '/api/v1/keys', {
      name: 'far',
      expiresAt: '9999-12-31T23:59:59-23:59',
    });
    expect(far.statusCode, far.body).toBe(400);
    expect(far.json()).toMatchObject({ code: 'validation_failed', field: 'expiresAt' });
    const keys = await env.admin('GET', `/admin/tenants/${tenant.slug}/keys`);
    expect(keys.statusCode, keys.body).toBe(200);
    expect(keys.json().keys.map((key: { name: string }) => key.name)).not.toContain('far');
  });

  it('a malformed URL or an over-long path segment is a problem+json 400, not Fastify’s own answer', async () => {
    for (const url of ['/api/v1/projects/%', '/api/v1/projects/%E0%A4%A', '/admin/tenants/%ZZ']) {
      const answer = await asTenant('GET', url);
      expect(answer.statusCode, url).toBe(400);
      expect(answer.headers['content-type'], url).toMatch(/^application\/problem\+json/);
      expect(answer.json(), url).toMatchObject({ code: 'validation_failed' });
      expect(answer.body).not.toContain('FST_');
    }
    const long = await asTenant('GET', `/api/v1/projects/${'x'.repeat(101)}`);
    expect(long.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(long.json()).toMatchObject({
      code: 'validation_failed',
      detail: expect.stringMatching(/path segment/),
    });
  });

  it('headers over the limit and broken chunked framing get problem+json from the HTTP parser', async () => {
    await env.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (env.app.server.address() as { port: number }).port;
    const overflow = await rawRequest(
      port,
      `GET /tenant-info HTTP/1.1\r\nHost: localhost\r\nX-API-Key: ${'k'.repeat(20_000)}\r\n\r\n`,
    );
    expect(overflow).toMatch(/^HTTP\/1\.1 431 /);
    expect(overflow).toMatch(/content-type: application\/problem\+json/i);
    expect(JSON.parse(overflow.split('\r\n\r\n')[1]!)).toMatchObject({
      status: 431,
      code: 'validation_failed',
    });
    const chunked = await rawRequest(
      port,
      'POST /api/v1/projects HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nnot a chunk\r\n\r\n',
    );
    expect(chunked).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(chunked.split('\r\n\r\n')[1]!)).toMatchObject({
      status: 400,
      code: 'validation_failed',
    });
  });

  it('two Host headers are a 400, whichever tenants they name', async () => {
    await env.createTenant('host-one');
    await env.createTenant('host-two');
    if (!env.app.server.listening) await env.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (env.app.server.address() as { port: number }).port;
    const twice = await rawRequest(
      port,
      'GET /tenant-info HTTP/1.1\r\nHost: host-one.localhost\r\nHost: host-two.localhost\r\nConnection: close\r\n\r\n',
    );
    expect(twice).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(twice.split('\r\n\r\n')[1]!)).toMatchObject({
      code: 'validation_failed',
      field: 'host',
    });
    const once = await rawRequest(
      port,
      'GET /tenant-info HTTP/1.1\r\nHost: host-one.localhost\r\nConnection: close\r\n\r\n',
    );
    expect(once).toMatch(/^HTTP\/1\.1 200 /);
  });
});
