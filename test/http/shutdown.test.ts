import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { ADMIN_TOKEN } from '../helpers/harness.js';

describe('shutdown', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-shutdown-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finishes a request in flight, then closes its keep-alive connection without waiting for the grace period', async () => {
    const config = loadConfig({
      ignoreConfigFile: true,
      env: { TENANTRY_DATA_DIR: join(dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN, PORT: '0' },
    });
    expect(config.server.shutdownGraceMs).toBeGreaterThanOrEqual(10_000);
    const server: RunningServer = await startServer({
      config: { ...config, server: { ...config.server, host: '127.0.0.1' } },
      logger: false,
      notice: () => undefined,
      extend: async (app) => {
        app.get('/slow', async () => {
          await new Promise((resolve) => setTimeout(resolve, 300));
          return { done: true };
        });
      },
    });
    const agent = new Agent({ keepAlive: true });
    try {
      const response = new Promise<{ status: number; body: string; socketClosed: Promise<void> }>(
        (resolve, reject) => {
          get(`${server.url}/slow`, { agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk: string) => {
              body += chunk;
            });
            const socketClosed = new Promise<void>((closed) => res.socket.once('close', () => closed()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, socketClosed }));
          }).on('error', reject);
        },
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      const closing = server.close();
      const answered = await response;
      expect(answered.status).toBe(200);
      expect(JSON.parse(answered.body)).toEqual({ done: true });
      await closing;
      await answered.socketClosed;
      // Without closing idle connections during shutdown, the keep-alive connection would hold
      // the server open until the 10 s grace period ends.
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      agent.destroy();
      await server.close();
    }
  });
});
