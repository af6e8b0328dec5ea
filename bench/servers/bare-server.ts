/**
 * The baseline for the HTTP benchmark: the same Fastify, logger off, one route answering the JSON
 * body given in BENCH_BODY (what Tenantry's /tenant-info answered). No hooks, no schema.
 * Prints `READY <url>` once it listens.
 */
import './collect-on-signal.js';
import './heap-probe.js';
import Fastify from 'fastify';

const body: unknown = JSON.parse(process.env.BENCH_BODY ?? '{}');
const app = Fastify({ logger: false });
app.get('/tenant-info', async () => body);
const url = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`READY ${url}\n`);

process.once('SIGTERM', () => {
  app.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
