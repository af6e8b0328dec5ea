/**
 * The real Tenantry server for the HTTP benchmark, in its own process. Configured from the
 * environment like `tenantry serve` (DATABASE_URL, TENANTRY_ADMIN_TOKEN), logger off, bound to
 * 127.0.0.1 on a free port. Prints `READY <url>` once it listens; SIGTERM closes it cleanly, so a
 * `--cpu-prof` profile is written.
 */
import './collect-on-signal.js';
import { loadConfig } from '../../src/config/load-config.js';
import { startServer } from '../../src/server.js';

const base = loadConfig({ ignoreConfigFile: true, overrides: { port: 0 } });
const config = { ...base, server: { ...base.server, host: '127.0.0.1' } };
const server = await startServer({
  config,
  logger: process.env.BENCH_LOGGER === 'config' ? { level: config.logLevel } : false,
  notice: (message) => process.stderr.write(`${message}\n`),
});
process.stdout.write(`READY ${server.url}\n`);

process.once('SIGTERM', () => {
  server.close().then(
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`close failed: ${String(error)}\n`);
      process.exit(1);
    },
  );
});
