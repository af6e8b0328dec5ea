/**
 * The peer of `/tenant-info` in the hot-path benchmark: a hand-written Fastify route that looks
 * the API key's digest up in a Map and answers the tenant's JSON with Tenantry's headers.
 * BENCH_KEYS (see peer-keys.ts): each tenant is the body to answer.
 */
import './collect-on-signal.js';
import './heap-probe.js';
import Fastify from 'fastify';
import { peerKeys, tenantHeaders } from '../lib/peer-keys.js';
import { serveUntilTerm } from '../lib/serve-until-term.js';

const tenantOf = peerKeys();
const app = Fastify({ logger: false });
app.get('/tenant-info', async (request, reply) => {
  const tenant = tenantOf(request.headers['x-api-key']);
  if (!tenant) return reply.code(401).send({ code: 'invalid_credentials' });
  tenantHeaders(reply);
  return tenant;
});
await serveUntilTerm(app);
