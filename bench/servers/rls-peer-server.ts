/**
 * The hand-written peer of the hot-path benchmark: what a careful team writes without a library.
 * The API key's digest is looked up in a Map; then one message to PostgreSQL (simple protocol)
 * opens a transaction, sets the tenant and the runtime role transaction-locally, reads the row
 * under Tenantry's own row-level security policies and commits: one round trip per request.
 * BENCH_DB_URL (a login that may SET ROLE to BENCH_ROLE), BENCH_KEYS (see peer-keys.ts).
 */
import './heap-probe.js';
import Fastify from 'fastify';
import pg from 'pg';
import { peerKeys, tenantHeaders, UUID } from '../lib/peer-keys.js';
import { serveUntilTerm } from '../lib/serve-until-term.js';

const tenantOf = peerKeys();
const role = process.env.BENCH_ROLE ?? 'tenantry_runtime';
const pool = new pg.Pool({ connectionString: process.env.BENCH_DB_URL, max: 10 });
const app = Fastify({ logger: false });

// Ids are checked against UUID before they are written into the statement; the role is ours.
const statement = (tenantId: string, id: string) =>
  `BEGIN; SELECT set_config('tenantry.tenant_id', '${tenantId}', true); SET LOCAL ROLE ${role};
   SELECT id, name, status, created_at, updated_at FROM app.projects WHERE id = '${id}'; COMMIT`;

app.get('/api/v1/projects/:id', async (request, reply) => {
  const tenant = tenantOf(request.headers['x-api-key']);
  if (!tenant) return reply.code(401).send({ code: 'invalid_credentials' });
  tenantHeaders(reply);
  const { id } = request.params as { id: string };
  if (!UUID.test(id)) return reply.code(404).send({ code: 'not_found' });
  const results = (await pool.query(statement(tenant.id, id))) as unknown as pg.QueryResult[];
  const row = results[3]?.rows[0];
  if (!row) return reply.code(404).send({ code: 'not_found' });
  return row;
});

await serveUntilTerm(app, () => pool.end());
