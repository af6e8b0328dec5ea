import type { Server } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { AdminTokenGuard } from './auth/admin-token.js';
import type { TenantryConfig } from './config/config-schema.js';
import { startControlSocket } from './control/control-server.js';
import type { Engine } from './engine/engine.js';
import { ConfigError } from './errors.js';
import { buildApp } from './http/app.js';
import { backupKey } from './lifecycle/archive/archive-encryption.js';
import { exportPruning } from './lifecycle/export-retention.js';
import { moveFinishing } from './lifecycle/move/move-finishing.js';
import { scheduledBackups } from './lifecycle/scheduled-backups.js';
import type { StaticSyncReport } from './lifecycle/static-tenant-sync.js';
import { auditPruning, Scheduler } from './runtime/scheduler.js';
import { type ConfigReloadReport, engineOf, Tenantry } from './tenantry.js';
import { assertTenantSettingsFit } from './tenants/tenant-settings.js';

/** While shutting down, how often connections that went idle are closed. */
const IDLE_SWEEP_MS = 25;

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly tenantry: Tenantry;
  /** The URL the server listens on. */
  readonly url: string;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), closes the database. */
  close(): Promise<void>;
  /**
   * Reads the config again (`load`) and applies what changes without a restart (SIGHUP). A file
   * that does not load or that the database contradicts is refused with an error log line, and
   * the running config stays in force: resolves undefined then.
   */
  reload(load: () => TenantryConfig): Promise<ConfigReloadReport | undefined>;
}

export interface StartServerOptions {
  readonly config: TenantryConfig;
  /** Where the one-time generated admin token and other operator notices go. */
  readonly notice?: (message: string) => void;
  readonly logger?: boolean | { level: string };
  /** Registers more routes before the app is sealed (embedding, tests). */
  readonly extend?: (app: FastifyInstance) => Promise<void>;
}

/** The server's scheduled work: audit and export pruning, moves' old copies, and the backups of `backups.schedule`. */
function clusterScheduler(engine: Engine, config: TenantryConfig, app: FastifyInstance): Scheduler {
  const scheduled = [
    auditPruning(config.logRetentionDays),
    exportPruning(config.backups.exportRetentionHours),
    moveFinishing(engine.moves, (error) =>
      app.log.warn({ err: error }, 'an old copy of a moved tenant could not be dropped'),
    ),
  ];
  if (config.backups.scheduleMs !== undefined) {
    const key = backupKey(undefined);
    scheduled.push(
      scheduledBackups(
        engine.archives,
        engine.jobs,
        { directory: config.backups.directory, keep: config.backups.keep, ...(key ? { key } : {}) },
        config.backups.scheduleMs,
        (error) => app.log.error({ err: error }, 'scheduled backups could not start'),
      ),
    );
  }
  return new Scheduler(engine.db.owner, scheduled, {
    onRun: (run) => app.log.info({ job: run.job, ...run.result }, 'scheduled job ran'),
    onError: (error) => app.log.warn({ err: error }, 'scheduled job failed; it runs again at the next check'),
  });
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
  const engine = engineOf(tenantry);
  let control: Server | undefined;
  try {
    await checkAuthSettings(engine);
    const { guard, generatedToken } = await AdminTokenGuard.setUp(engine.db.owner, config.adminToken);
    if (generatedToken && config.auth.adminToken) {
      notice(
        `Generated admin token (shown once, stored only as a hash):\n\n  ${generatedToken}\n\n` +
          'Use it as "Authorization: Bearer <token>" on /admin routes, or set TENANTRY_ADMIN_TOKEN.',
      );
    }
    // Before listening: the declared tenants exist when the first request comes.
    announceCreatedTenants(notice, await tenantry.syncStaticTenants());
    // A reload refuses a settings schema that tenants do not fit; at start that would be an
    // outage, so it is said instead: those tenants serve, and their next config change must fit.
    await assertTenantSettingsFit(engine.db.owner, config.settingsSchema, config.plans).catch(
      (error: unknown) => notice(`warning: ${error instanceof Error ? error.message : String(error)}`),
    );
    const app = await buildApp({
      tenantry,
      adminGuard: guard,
      ...(logger ? { loggerInstance: logger } : {}),
      ...(options.extend ? { extend: options.extend } : {}),
    });
    if (engine.db.driver === 'pglite') control = await startControlSocket(engine, config.dataDir);
    const address = await app.listen({ port: config.server.port, host: config.server.host });
    // Cluster-wide jobs: whichever server process is due runs them, once.
    const scheduler = clusterScheduler(engine, config, app);
    scheduler.start();
    let closing: Promise<void> | undefined;
    return {
      app,
      tenantry,
      url: address,
      async reload(load) {
        if (closing) return undefined;
        const before = tenantry.config;
        try {
          const report = await tenantry.reloadConfig(load());
          announceCreatedTenants(notice, report.sync);
          return report;
        } catch (error) {
          engine.logger.error(
            error instanceof ConfigError
              ? { key: error.key, reason: error.message }
              : { reason: error instanceof Error ? error.message : String(error) },
            tenantry.config === before
              ? 'config reload refused: the running config stays in force'
              : 'config reloaded, but the static tenant sync stopped part way: fix the file and reload again',
          );
          return undefined;
        }
      },
      close() {
        closing ??= (async () => {
          await scheduler.stop();
          const grace = setTimeout(() => app.server.closeAllConnections(), config.server.shutdownGraceMs);
          // A keep-alive connection whose last request finishes during shutdown would hold the
          // server open until its idle timeout: close connections as they go idle. (Done here
          // rather than with a Connection: close on each response, which costs every request a
          // hook.)
          const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS);
          try {
            await app.close();
          } finally {
            clearInterval(sweep);
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

/** New tenants' keys go to the operator's terminal like the admin token, never to the JSON logs. */
function announceCreatedTenants(notice: (message: string) => void, report: StaticSyncReport): void {
  for (const { slug, apiKey } of report.created) {
    notice(
      `Created tenant ${slug} from the config file. Its API key (shown once, stored only as a hash):\n\n  ${apiKey.key}\n`,
    );
  }
}

/**
 * Settings that need something in the database: refused at start (exit 2, naming the setting)
 * rather than starting a server nobody can administer.
 */
async function checkAuthSettings(engine: Engine): Promise<void> {
  if (!engine.config.auth.adminToken && (await engine.identity.users.countGlobalAdmins()) === 0) {
    throw new ConfigError(
      'auth.adminToken',
      'is false, but no global admin user exists: create one first (tenantry users create --global-admin --email ...)',
    );
  }
}

export type { TenantryConfig };
