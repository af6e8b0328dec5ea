import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { AdminTokenGuard } from './auth/admin-token.js';
import type { TenantryConfig } from './config/config-schema.js';
import { buildApp } from './http/app.js';
import { startControlSocket } from './http/control-socket.js';
import { auditPruning, Scheduler } from './runtime/scheduler.js';
import { Tenantry } from './tenantry.js';

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly tenantry: Tenantry;
  /** The URL the server listens on. */
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), closes the database. */
  close(): Promise<void>;
}

export interface StartServerOptions {
  readonly config: TenantryConfig;
  /** Where the one-time generated admin token and other operator notices go. */
  readonly notice?: (message: string) => void;
  readonly logger?: boolean | { level: string };
}

/**
 * Starts `tenantry serve`: migrates the control plane, opens the HTTP server and, on the
 * embedded database, the control socket the CLI uses while the server holds the data.
 *
 * @example
 * const server = await startServer({ config: loadConfig() });
 * process.once('SIGTERM', () => server.close());
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config } = options;
  const notice = options.notice ?? ((message: string) => process.stderr.write(`${message}\n`));
  const logging = options.logger ?? { level: config.logLevel };
  // One logger for the engine and the HTTP layer, so engine events (Redis down, reloads) are
  // lines of the same stream.
  const logger = logging ? pino(logging === true ? {} : logging) : undefined;
  let tenantryRef: Tenantry | undefined;
  const tenantry = await Tenantry.open({
    config,
    ...(logger ? { logger } : {}),
    verifyEntities: true,
    onBackgroundError: (error) => tenantryRef && notice(`background error: ${String(error)}`),
  });
  tenantryRef = tenantry;
  let control: Server | undefined;
  try {
    const { guard, generatedToken } = await AdminTokenGuard.setUp(tenantry.db.owner, config.adminToken);
    if (generatedToken) {
      notice(
        `Generated admin token (shown once, stored only as a hash):\n\n  ${generatedToken}\n\n` +
          'Use it as "Authorization: Bearer <token>" on /admin routes, or set TENANTRY_ADMIN_TOKEN.',
      );
    }
    const lifecycle = { closing: false };
    const app = await buildApp({
      tenantry,
      adminGuard: guard,
      ...(logger ? { loggerInstance: logger } : {}),
      lifecycle,
    });
    if (tenantry.db.driver === 'pglite') control = await startControlSocket(tenantry, config.dataDir);
    const address = await app.listen({ port: config.server.port, host: config.server.host });
    // Cluster-wide jobs: whichever server process is due runs them, once.
    const scheduler = new Scheduler(tenantry.db.owner, [auditPruning(config.logRetentionDays)], {
      onRun: (run) => app.log.info({ job: run.job, ...run.result }, 'scheduled job ran'),
      onError: (error) =>
        app.log.warn({ err: error }, 'scheduled job failed; it runs again at the next check'),
    });
    scheduler.start();
    let closing: Promise<void> | undefined;
    return {
      app,
      tenantry,
      url: address,
      close() {
        closing ??= (async () => {
          lifecycle.closing = true;
          await scheduler.stop();
          const grace = setTimeout(() => app.server.closeAllConnections(), config.server.shutdownGraceMs);
          try {
            await app.close();
          } finally {
            clearTimeout(grace);
            await new Promise<void>((resolve) => (control ? control.close(() => resolve()) : resolve()));
            await tenantry.close();
          }
        })();
        return closing;
      },
    };
  } catch (error) {
    await new Promise<void>((resolve) => (control ? control.close(() => resolve()) : resolve()));
    await tenantry.close();
    throw error;
  }
}

export type { TenantryConfig };
