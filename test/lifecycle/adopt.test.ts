import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { adoptDatabase, proposeAdoption, writeProposal } from '../../src/lifecycle/adopt/adopt-database.js';
import { runCli } from '../helpers/cli.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { createDatabase } from '../helpers/postgres.js';

const CONTEXT = { actor: { kind: 'cli', id: 'test' } } as const;

/** A single-tenant shop, as an application made before Tenantry would have it. */
const LEGACY_SCHEMA = `
  CREATE TYPE tier AS ENUM ('basic', 'gold');
  CREATE TABLE customers (
    id serial PRIMARY KEY,
    name varchar(80) NOT NULL UNIQUE,
    level tier NOT NULL DEFAULT 'basic',
    tags text[],
    created_at timestamptz NOT NULL DEFAULT now()
  );
  CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers (id),
    total numeric(10, 2),
    paid boolean NOT NULL DEFAULT false,
    placed date,
    notes text,
    receipt bytea
  );
  CREATE TABLE documents (
    id uuid PRIMARY KEY,
    title text NOT NULL,
    "limit" integer,
    "order" integer,
    parent uuid REFERENCES documents (id)
  );
  CREATE TABLE order_tags (order_id bigint REFERENCES orders (id), tag text, PRIMARY KEY (order_id, tag));
  INSERT INTO customers (name, level, tags, created_at) VALUES
    ('Ada', 'gold', '{a,b}', '2020-01-02T03:04:05Z'), ('Bob', 'basic', NULL, '2021-05-06T07:08:09Z');
  INSERT INTO orders (customer_id, total, paid, placed, notes, receipt) VALUES
    (1, 12.50, true, '2024-02-29', E'tab\\there', '\\xdeadbeef'), (1, NULL, false, NULL, NULL, NULL), (2, 99.99, true, '2025-12-31', 'é北', NULL);
  INSERT INTO documents (id, title, "limit", parent) VALUES
    ('0193a0c4-0000-7000-8000-000000000001', 'root', 3, NULL),
    ('0193a0c4-0000-7000-8000-000000000002', 'child', NULL, '0193a0c4-0000-7000-8000-000000000001');
`;

describe.runIf(DRIVERS.includes('postgres'))('adopting a single-tenant database', () => {
  let source: { url: string; drop: () => Promise<void> };
  let dir: string;

  beforeAll(async () => {
    source = await createDatabase({ template: null });
    const client = new pg.Client({ connectionString: source.url });
    await client.connect();
    await client.query(LEGACY_SCHEMA);
    await client.query('ANALYZE');
    await client.end();
    dir = await mkdtemp(join(tmpdir(), 'tenantry-adopt-'));
  }, 60_000);

  afterAll(async () => {
    await source?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('proposes entities: types, required, unique, enums, references, legacy keys; and says what it leaves out', async () => {
    const plan = await proposeAdoption({ from: source.url });
    expect(plan.entities.customers).toEqual({
      scope: 'tenant',
      fields: {
        legacy_id: { type: 'integer', required: true, unique: true },
        name: { type: 'text', required: true, unique: true, maxLength: 80 },
        level: { type: 'enum', required: true, values: ['basic', 'gold'], default: 'basic' },
        tags: { type: 'json' },
      },
    });
    expect(plan.entities.orders?.fields).toMatchObject({
      legacy_id: { type: 'integer' },
      customer_id: { type: 'ref', to: 'customers', required: true, onDelete: 'restrict' },
      total: { type: 'number' },
      paid: { type: 'boolean', required: true, default: false },
      placed: { type: 'date' },
      notes: { type: 'text' },
    });
    expect(plan.entities.documents?.fields).toMatchObject({
      title: { type: 'text', required: true },
      limit_value: { type: 'integer' },
      order_value: { type: 'integer' },
      parent: { type: 'ref', to: 'documents', onDelete: 'set-null' },
    });
    expect(plan.entities.documents?.fields).not.toHaveProperty('legacy_id');
    expect(plan.unmapped).toEqual(
      expect.arrayContaining([
        { table: 'orders', column: 'receipt', reason: 'type bytea has no entity field type' },
        expect.objectContaining({
          table: 'order_tags',
          reason: expect.stringMatching(/primary key has 2 columns/),
        }),
      ]),
    );
    // The proposal is a declaration Tenantry accepts as it is.
    expect(() => normaliseEntities(plan.entities)).not.toThrow();
  });

  it('refuses to copy before the entities are declared, and --plan changes nothing', async () => {
    const file = join(dir, 'plan-only.yaml');
    const planned = await runCli(['adopt', '--from', source.url, '--plan', '--json'], {});
    expect(planned.code).toBe(0);
    expect(JSON.parse(planned.stdout)).toMatchObject({ entities: { customers: { scope: 'tenant' } } });
    const env = await startTestEnv('pglite', {});
    try {
      await expect(
        adoptDatabase(env.engine.archives, { from: source.url }, { tenant: 'too-early' }, CONTEXT),
      ).rejects.toMatchObject({ code: 'validation_failed', field: 'entities' });
      expect(await env.engine.store.findBySlug('too-early')).toBeUndefined();
    } finally {
      await env.close();
    }
    await expect(readFile(file)).rejects.toThrow();
  });

  it.each(DRIVERS)(
    'copies the rows into a new tenant, references mapped, on %s',
    async (driver) => {
      const file = join(dir, `tenantry-${driver}.yaml`);
      await writeFile(file, 'server:\n  baseDomain: localhost\n');
      writeProposal(file, await proposeAdoption({ from: source.url }));
      const config = parse(await readFile(file, 'utf8')) as { server: unknown; entities: unknown };
      expect(config.server).toEqual({ baseDomain: 'localhost' });
      let env: TestEnv | undefined;
      try {
        env = await startTestEnv(driver, { entities: normaliseEntities(config.entities) });
        for (const isolation of ['row', 'schema'] as const) {
          const slug = `shop-${isolation}`;
          const report = await adoptDatabase(
            env.engine.archives,
            { from: source.url },
            { tenant: slug, isolation },
            CONTEXT,
          );
          expect(report.rows).toBe(7);
          expect(report.tenant).toMatchObject({ slug, isolation, status: 'active' });
          const orders = await env.tenantry.withTenant(slug, (db) =>
            db.query(
              `SELECT o.legacy_id, o.total, o.paid, o.placed::text AS placed, o.notes, c.name AS customer, c.level, c.tags
               FROM orders o JOIN customers c ON c.id = o.customer_id ORDER BY o.legacy_id`,
            ),
          );
          expect(orders.rows).toEqual([
            {
              legacy_id: 1,
              total: 12.5,
              paid: true,
              placed: '2024-02-29',
              notes: 'tab\there',
              customer: 'Ada',
              level: 'gold',
              tags: ['a', 'b'],
            },
            {
              legacy_id: 2,
              total: null,
              paid: false,
              placed: null,
              notes: null,
              customer: 'Ada',
              level: 'gold',
              tags: ['a', 'b'],
            },
            {
              legacy_id: 3,
              total: 99.99,
              paid: true,
              placed: '2025-12-31',
              notes: 'é北',
              customer: 'Bob',
              level: 'basic',
              tags: null,
            },
          ]);
          const documents = await env.tenantry.withTenant(slug, (db) =>
            db.query(
              'SELECT d.id, d.title, d.limit_value, p.title AS parent FROM documents d LEFT JOIN documents p ON p.id = d.parent ORDER BY d.id',
            ),
          );
          expect(documents.rows).toEqual([
            { id: '0193a0c4-0000-7000-8000-000000000001', title: 'root', limit_value: 3, parent: null },
            { id: '0193a0c4-0000-7000-8000-000000000002', title: 'child', limit_value: null, parent: 'root' },
          ]);
          const created = await env.tenantry.withTenant(slug, (db) =>
            db.query("SELECT created_at FROM customers WHERE name = 'Ada'"),
          );
          expect(new Date(created.rows[0]!.created_at as string).toISOString()).toBe(
            '2020-01-02T03:04:05.000Z',
          );
          // Its new key reaches its rows through the API.
          const listed = await env.inject({
            url: '/api/v1/customers',
            headers: { 'x-api-key': report.apiKey!.key },
          });
          expect((listed.json() as { items: unknown[] }).items).toHaveLength(2);
        }
      } finally {
        await env?.close();
      }
    },
    120_000,
  );
});
