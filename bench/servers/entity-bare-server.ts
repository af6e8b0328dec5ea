/**
 * The baseline of the entity benchmark: the same Fastify and the same SQL as Tenantry's generated
 * queries for one tenant's `projects`, through a plain pg pool logged in as the owner (so no
 * row-level security is evaluated), without resolution, tenant transaction or validation.
 * BENCH_DB_URL: database; BENCH_TABLE: qualified table; BENCH_TENANT: the tenant id;
 * BENCH_PREPARED=1: each statement prepared under a name (parsed and planned once per connection),
 * as Tenantry does, instead of pg's default unnamed statement.
 */
import './heap-probe.js';
import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';
import pg from 'pg';
import { serveUntilTerm } from '../lib/serve-until-term.js';

const table = process.env.BENCH_TABLE ?? 'app.projects';
const tenant = process.env.BENCH_TENANT ?? '';
const pool = new pg.Pool({ connectionString: process.env.BENCH_DB_URL, max: 10 });
const columns = 'id, name, status, created_at, updated_at';
const prepared = process.env.BENCH_PREPARED === '1';
const query = (name: string, text: string, values: unknown[]) =>
  pool.query(prepared ? { name, text, values } : { text, values });
const app = Fastify({ logger: false });

app.get('/api/v1/projects/:id', async (request, reply) => {
  const { id } = request.params as { id: string };
  const { rows } = await query(
    'by_id',
    `SELECT ${columns} FROM ${table} WHERE tenant_id = $1::uuid AND id = $2::uuid`,
    [tenant, id],
  );
  if (!rows[0]) return reply.code(404).send({ code: 'not_found' });
  return rows[0];
});
app.get('/api/v1/projects', async (request) => {
  const limit = Number((request.query as { limit?: string }).limit ?? 50);
  const { rows } = await query(
    `list_${limit}`,
    `SELECT ${columns} FROM ${table} WHERE tenant_id = $1::uuid ORDER BY id ASC LIMIT ${limit + 1}`,
    [tenant],
  );
  return { items: rows.slice(0, limit), next: null };
});
app.post('/api/v1/projects', async (request, reply) => {
  const body = request.body as { name: string };
  const { rows } = await query(
    'insert',
    `INSERT INTO ${table} (tenant_id, id, name) VALUES ($1::uuid, $2::uuid, $3::text) RETURNING ${columns}`,
    [tenant, randomUUID(), body.name],
  );
  reply.code(201);
  return rows[0];
});

await serveUntilTerm(app, () => pool.end());
