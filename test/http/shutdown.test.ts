import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { eventually } from '../helpers/eventually.js';
import { ADMIN_TOKEN } from '../helpers/harness.js';

describe('shutdown', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-shutdown-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finishes a request in flight, then closes its keep-alive connection without waiting for the grace period', async () => {
    const config = loadConfig({
      ignoreConfigFile: true,
      env: { TENANTRY_DATA_DIR: join(dir, 'data'), TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN, PORT: '0' },
    });
    // A grace period far beyond the test: if the connection closes, it is not the grace period's doing.
    const server: RunningServer = await startServer({
      config: { ...config, server: { ...config.server, host: '127.0.0.1', shutdownGraceMs: 600_000 } },
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
      let closed = false;
      const closing = server.close().then(() => {
        closed = true;
      });
      const answered = await response;
      expect(answered.status).toBe(200);
      expect(JSON.parse(answered.body)).toEqual({ done: true });
      // Without closing idle connections during shutdown, the keep-alive connection would hold
      // the server open until the grace period (or the connection's idle timeout) ends.
      await eventually('the server closed, with its keep-alive connection', () => closed);
      await closing;
      await answered.socketClosed;
    } finally {
      agent.destroy();
      await server.close();
    }
  });
});
