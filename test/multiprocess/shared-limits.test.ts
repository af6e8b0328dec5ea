import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';
import { REDIS_URL, redisAvailable, redisPrefix } from '../helpers/redis.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

const REDIS = DRIVERS.includes('postgres') && (await redisAvailable());
const adminJson = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' };

const tenantInfo = (server: ServerProcess, key: string) =>
  new Promise<{ status: number; remaining: string | undefined }>((resolve, reject) => {
    const req = request(
      `${server.url}/tenant-info`,
      { headers: { 'x-api-key': key }, agent: false },
      (response) => {
        response.resume();
        response.on('end', () =>
          resolve({
            status: response.statusCode ?? 0,
            remaining: response.headers['ratelimit-remaining'] as string | undefined,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });

describe.runIf(REDIS)('two server processes on one PostgreSQL and one Redis', () => {
  let a: ServerProcess;
  let b: ServerProcess;
  let drop: () => Promise<void>;
  let dir: string;

  beforeAll(async () => {
    const database = await createDatabase();
    drop = database.drop;
    dir = mkdtempSync(join(tmpdir(), 'tenantry-shared-limits-'));
    const configFile = join(dir, 'tenantry.config.yaml');
    writeFileSync(
      configFile,
      `plans:\n  metered:\n    limits: { requestsPerSecond: 0.1, burst: 6 }\nrateLimits:\n  redisPrefix: "${redisPrefix()}"\n`,
    );
    const env = {
      DATABASE_URL: database.url,
      TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN,
      REDIS_URL,
      TENANTRY_CONFIG: configFile,
    };
    [a, b] = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('share one rate limit: a tenant gets its burst once across both, not once per process', async () => {
    const created = await fetch(`${a.url}/admin/tenants`, {
      method: 'POST',
      headers: adminJson,
      body: JSON.stringify({ name: 'Metered', slug: 'metered', plan: 'metered' }),
    }).then((response) => response.json() as Promise<{ apiKey: { key: string } }>);
    const key = created.apiKey.key;
    const answers = [];
    for (let i = 0; i < 10; i += 1) answers.push(await tenantInfo(i % 2 === 0 ? a : b, key));
    expect(answers.map((answer) => answer.status)).toEqual([
      200, 200, 200, 200, 200, 200, 429, 429, 429, 429,
    ]);
    // The remaining count goes down across processes: one bucket.
    expect(answers.slice(0, 6).map((answer) => answer.remaining)).toEqual(['5', '4', '3', '2', '1', '0']);
  });
});
