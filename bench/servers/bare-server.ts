/**
 * The baseline for the HTTP benchmark: the same Fastify, logger off, one route answering the JSON
 * body given in BENCH_BODY (what Tenantry's /tenant-info answered). No hooks, no schema.
 * Prints `READY <url>` once it listens.
 */
import './collect-on-signal.js';
import './heap-probe.js';
import Fastify from 'fastify';
import { serveUntilTerm } from '../lib/serve-until-term.js';

const body: unknown = JSON.parse(process.env.BENCH_BODY ?? '{}');
const app = Fastify({ logger: false });
app.get('/tenant-info', async () => body);
await serveUntilTerm(app);
