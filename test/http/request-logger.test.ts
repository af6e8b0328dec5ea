import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdminTokenGuard } from '../../src/auth/admin-token.js';
import { buildApp } from '../../src/http/app.js';
import { lazyChildLogger, withLazyRequestChildren } from '../../src/http/request-logger.js';
import { startTestEnv, type TestEnv } from '../helpers/harness.js';

/** A pino logger at `level` whose lines land in `lines`, counting the children made of it. */
function capturingLogger(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  const logger = pino({ level }, stream);
  let children = 0;
  const child = logger.child;
  // A function, not an arrow: children of children inherit it and must keep their own `this`.
  logger.child = function (this: typeof logger, ...args: Parameters<typeof child>) {
    children += 1;
    return child.apply(this, args);
  } as typeof logger.child;
  return { logger, lines, children: () => children };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('lazy request loggers', () => {
  it('make no pino child until a line is logged at an enabled level', () => {
    const { logger, lines, children } = capturingLogger('warn');
    const log = lazyChildLogger(logger, { reqId: 'r-1' }, {});
    const tenant = log.child({ tenantId: 't-1' });
    tenant.info('not written');
    tenant.debug('not written');
    expect(children()).toBe(0);
    expect(tenant.level).toBe('warn');
    tenant.warn({ code: 'x' }, 'written');
    expect(children()).toBe(1);
    expect(lines).toEqual([
      expect.objectContaining({ level: 40, reqId: 'r-1', tenantId: 't-1', code: 'x', msg: 'written' }),
    ]);
  });

  it('follow a level changed on the parent, and make a real child for options', () => {
    const { logger, lines, children } = capturingLogger('warn');
    const log = lazyChildLogger(logger, { reqId: 'r-2' }, {});
    logger.level = 'info';
    log.info('now written');
    expect(lines).toEqual([expect.objectContaining({ reqId: 'r-2', msg: 'now written' })]);
    lazyChildLogger(logger, { reqId: 'r-3' }, { level: 'error' });
    expect(children()).toBe(2);
  });
});

describe('a logger instance with lazy request children', () => {
  it('makes real children for options, lazy ones for bindings, and writes both bindings', () => {
    const { logger, lines, children } = capturingLogger('warn');
    const root = withLazyRequestChildren(logger);
    // What Fastify does once with an instance: a child carrying its serializers.
    const app = root.child({}, { serializers: { extra: (value: string) => value.toUpperCase() } });
    expect(children()).toBe(1);
    const request = app.child({ reqId: 'r-9' });
    const tenant = request.child({ tenantId: 't-9' });
    tenant.info('not written');
    expect(children()).toBe(1);
    tenant.error({ extra: 'serialized' }, 'written');
    expect(children()).toBe(2);
    expect(lines).toEqual([
      expect.objectContaining({
        level: 50,
        reqId: 'r-9',
        tenantId: 't-9',
        extra: 'SERIALIZED',
        msg: 'written',
      }),
    ]);
  });

  it('follows a level set on the application logger', () => {
    const { logger, lines } = capturingLogger('warn');
    const app = withLazyRequestChildren(logger).child({}, { level: 'warn' });
    const request = app.child({ reqId: 'r-10' });
    request.info('not yet');
    app.level = 'info';
    request.info('now');
    expect(lines.map((line) => line.msg)).toEqual(['now']);
  });
});

describe('the server’s request logs', () => {
  let env: TestEnv;
  let tenant: { id: string; key: string };
  beforeAll(async () => {
    env = await startTestEnv('pglite');
    tenant = await env.createTenant('logged');
  });
  afterAll(async () => {
    await env?.close();
  });

  async function appLoggingAt(level: string) {
    const capture = capturingLogger(level);
    const { guard } = await AdminTokenGuard.setUp(env.engine.db.owner, env.config.adminToken);
    const app = await buildApp({ tenantry: env.tenantry, adminGuard: guard, loggerInstance: capture.logger });
    return { app, ...capture };
  }

  it('at warn, answer tenant requests without making a child logger', async () => {
    const { app, lines, children } = await appLoggingAt('warn');
    const before = children();
    try {
      for (let n = 0; n < 5; n += 1) {
        const response = await app.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } });
        expect(response.statusCode).toBe(200);
      }
      await settle();
      expect(children() - before).toBe(0);
      expect(lines).toEqual([]);
    } finally {
      await app.close();
    }
  });

  it('at info, write each line with the request id and the tenant, as before', async () => {
    const { app, lines } = await appLoggingAt('info');
    try {
      const response = await app.inject({
        url: '/tenant-info',
        headers: { 'x-api-key': tenant.key, 'x-request-id': 'trace-0001' },
      });
      expect(response.statusCode).toBe(200);
      await settle();
      const completed = lines.find((line) => line.msg === 'request completed');
      expect(completed).toMatchObject({ reqId: 'trace-0001', tenantId: tenant.id, tenantSlug: 'logged' });
      // Fastify's serializers still shape the request: they reach pino through the wrapped instance.
      expect(lines.find((line) => line.msg === 'incoming request')).toMatchObject({
        reqId: 'trace-0001',
        req: { method: 'GET', url: '/tenant-info' },
      });
    } finally {
      await app.close();
    }
  });
});
