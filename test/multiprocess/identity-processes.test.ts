import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

const PASSWORD = 'correct horse battery staple';

/** node:http, because fetch() drops the Host header. */
function call(
  server: ServerProcess,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: unknown,
): Promise<{ status: number; json: () => Record<string, unknown> }> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${server.url}${path}`,
      {
        method,
        agent: false,
        headers: {
          ...headers,
          ...(payload
            ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(payload)) }
            : {}),
        },
      },
      (response) => {
        let text = '';
        response.on('data', (chunk) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, json: () => JSON.parse(text) }));
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe.runIf(DRIVERS.includes('postgres'))('sessions across two server processes', () => {
  let a: ServerProcess;
  let b: ServerProcess;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const database = await createDatabase();
    drop = database.drop;
    const env = { DATABASE_URL: database.url, TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN };
    [a, b] = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await drop?.();
  });

  it('a user deactivated in one process loses its session in the other too', async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
    const created = await call(a, 'POST', '/admin/tenants', admin, {
      name: 'Two',
      slug: 'two-procs',
      adminEmail: 'boss@two.test',
    });
    expect(created.status).toBe(201);
    const setupToken = (created.json().admin as { setupToken: string }).setupToken;
    expect((await call(b, 'POST', '/auth/setup', {}, { token: setupToken, password: PASSWORD })).status).toBe(
      204,
    );
    const host = { host: 'two-procs.localhost' };
    const boss = (
      await call(a, 'POST', '/auth/login', host, { email: 'boss@two.test', password: PASSWORD })
    ).json().token as string;
    const asBoss = { ...host, authorization: `Bearer ${boss}` };
    const worker = await call(a, 'POST', '/api/v1/users', asBoss, {
      email: 'worker@two.test',
      password: PASSWORD,
    });
    expect(worker.status).toBe(201);
    const workerId = (worker.json().user as { id: string }).id;
    const token = (
      await call(b, 'POST', '/auth/login', host, { email: 'worker@two.test', password: PASSWORD })
    ).json().token as string;
    const asWorker = { ...host, authorization: `Bearer ${token}` };
    // Both processes have verified (and cached) the session.
    expect((await call(a, 'GET', '/tenant-info', asWorker)).status).toBe(200);
    expect((await call(b, 'GET', '/tenant-info', asWorker)).status).toBe(200);

    expect((await call(a, 'PATCH', `/api/v1/users/${workerId}`, asBoss, { status: 'inactive' })).status).toBe(
      200,
    );
    expect((await call(a, 'GET', '/tenant-info', asWorker)).status).toBe(401);
    await eventually(
      'the other process refuses the session',
      async () => (await call(b, 'GET', '/tenant-info', asWorker)).status === 401,
    );
  });
});
