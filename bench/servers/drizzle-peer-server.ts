/**
 * The ORM peer of the hot-path benchmark: Fastify + Drizzle (node-postgres) with row-level
 * security the way Drizzle's guides set it up, a transaction per request that sets the tenant and
 * the role and then runs the query (BEGIN, two settings, SELECT, COMMIT: five round trips). The
 * API key is looked up like the hand-written peer's. BENCH_DB_URL, BENCH_ROLE, BENCH_KEYS.
 */
import './heap-probe.js';
import { eq, sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgSchema, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import Fastify from 'fastify';
import pg from 'pg';
import { peerKeys, tenantHeaders, UUID } from '../lib/peer-keys.js';
import { serveUntilTerm } from '../lib/serve-until-term.js';

const projects = pgSchema('app').table('projects', {
  tenantId: uuid('tenant_id').notNull(),
  id: uuid('id').primaryKey(),
  name: text('name').notNull(),
  status: text('status').notNull(),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull(),
});

const tenantOf = peerKeys();
const role = sql.raw(process.env.BENCH_ROLE ?? 'tenantry_runtime');
const pool = new pg.Pool({ connectionString: process.env.BENCH_DB_URL, max: 10 });
const db = drizzle(pool);
const app = Fastify({ logger: false });

app.get('/api/v1/projects/:id', async (request, reply) => {
  const tenant = tenantOf(request.headers['x-api-key']);
  if (!tenant) return reply.code(401).send({ code: 'invalid_credentials' });
  tenantHeaders(reply);
  const { id } = request.params as { id: string };
  if (!UUID.test(id)) return reply.code(404).send({ code: 'not_found' });
  const rows = await db.transaction(async (tx) => {
    await tx.execute(sql`SELECT set_config('tenantry.tenant_id', ${tenant.id}, true)`);
    await tx.execute(sql`SET LOCAL ROLE ${role}`);
    return tx
      .select({
        id: projects.id,
        name: projects.name,
        status: projects.status,
        created_at: projects.createdAt,
        updated_at: projects.updatedAt,
      })
      .from(projects)
      .where(eq(projects.id, id));
  });
  if (!rows[0]) return reply.code(404).send({ code: 'not_found' });
  return rows[0];
});

await serveUntilTerm(app, () => pool.end());
