/**
 * Tenantry with the benchmark's entities (TENANTRY_CONFIG), in its own process, logger off (with
 * BENCH_LOGGER=config: the logger `tenantry serve` has, at LOG_LEVEL), on a free port of
 * 127.0.0.1. Prints `READY <url>`; SIGTERM closes it.
 */
import { loadConfig } from '../../src/config/load-config.js';
import { startServer } from '../../src/server.js';

const base = loadConfig({ overrides: { port: 0 } });
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
    () => process.exit(1),
  );
});
