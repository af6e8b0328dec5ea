import { createReadStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { backupTenantToFile } from '../../src/lifecycle/tenant-backup.js';
import { restoreTenant } from '../../src/lifecycle/tenant-restore.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const CONTEXT = { actor: { kind: 'cli', id: 'test' } } as const;

const ENTITIES = normaliseEntities({
  things: {
    scope: 'tenant',
    fields: {
      label: { type: 'text', required: true },
      note: { type: 'text' },
      amount: { type: 'number' },
      count: { type: 'integer' },
      flag: { type: 'boolean' },
      day: { type: 'date' },
      at: { type: 'timestamp' },
      ref: { type: 'uuid' },
      data: { type: 'json' },
      parent: { type: 'ref', to: 'things', onDelete: 'set-null' },
    },
  },
});

/** Text PostgreSQL can store: any Unicode but NUL, tabs, newlines and backslashes included. */
const text = fc.string({ unit: 'binary', maxLength: 40 }).map((value) => value.replaceAll('\u0000', ''));
const json = fc
  .jsonValue({ maxDepth: 3 })
  .map((value) =>
    JSON.parse(
      JSON.stringify(value, (_key, inner) =>
        typeof inner === 'string' ? inner.replaceAll('\u0000', '') : inner,
      ),
    ),
  );
const row = fc.record({
  label: text,
  note: fc.option(
    fc.oneof(text, fc.constantFrom('\\N', '\\.', '\t', '\n', '\r\n', '\\\\', 'x'.repeat(5000))),
  ),
  amount: fc.option(fc.double({ noNaN: true, noDefaultInfinity: true })),
  count: fc.option(fc.integer({ min: -(2 ** 53) + 1, max: 2 ** 53 - 1 })),
  flag: fc.option(fc.boolean()),
  day: fc.option(fc.date({ min: new Date('0001-01-01'), max: new Date('9999-12-31'), noInvalidDate: true })),
  at: fc.option(fc.date({ min: new Date('1900-01-01'), max: new Date('2200-01-01'), noInvalidDate: true })),
  ref: fc.option(fc.uuid()),
  data: fc.option(json),
  parentOf: fc.option(fc.nat()),
});

describe.each(DRIVERS)('backup and restore of generated rows (%s)', (driver) => {
  let env: TestEnv;
  let dir: string;
  let runs = 0;

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: ENTITIES });
    dir = await mkdtemp(join(tmpdir(), 'tenantry-backup-property-'));
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const rowsOf = (slug: string) =>
    env.tenantry.withTenant(slug, async (db) => {
      const { rows } = await db.query(
        `SELECT id, label, note, amount, count, flag, day::text AS day, at, ref, data, parent, created_at, updated_at
           FROM things ORDER BY id`,
      );
      return rows;
    });

  it('gives back every row as it was, at every level, and the same archive bytes', async () => {
    const levels: IsolationLevel[] = ['row', 'schema'];
    await fc.assert(
      fc.asyncProperty(
        fc.array(row, { maxLength: 25 }),
        fc.constantFrom(...levels),
        fc.constantFrom(...levels),
        async (rows, from, to) => {
          runs += 1;
          const slug = `prop-${runs}`;
          await env.createTenant(slug, { isolation: from });
          await env.tenantry.withTenant(slug, async (db) => {
            const ids: string[] = [];
            for (const value of rows) {
              const { rows: inserted } = await db.query<{ id: string }>(
                `INSERT INTO things (tenant_id, id, label, note, amount, count, flag, day, at, ref, data, parent)
               VALUES (current_setting('tenantry.tenant_id')::uuid, gen_random_uuid(), $1, $2, $3, $4, $5, $6::date, $7, $8, $9::jsonb, $10)
               RETURNING id`,
                [
                  value.label,
                  value.note,
                  value.amount,
                  value.count,
                  value.flag,
                  value.day?.toISOString().slice(0, 10) ?? null,
                  value.at,
                  value.ref,
                  value.data === null ? null : JSON.stringify(value.data),
                  value.parentOf === null || ids.length === 0 ? null : ids[value.parentOf % ids.length],
                ],
              );
              ids.push(inserted[0]!.id);
            }
          });
          const first = await backupTenantToFile(
            env.engine.archives,
            slug,
            join(dir, `${slug}.tgz`),
            CONTEXT,
          );
          const restored = await restoreTenant(
            env.engine.archives,
            createReadStream(join(dir, `${slug}.tgz`)),
            CONTEXT,
            {
              as: `${slug}-copy`,
              isolation: to,
            },
          );
          const second = await backupTenantToFile(
            env.engine.archives,
            restored.tenant.slug,
            join(dir, `${slug}-copy.tgz`),
            CONTEXT,
          );
          const data = (report: typeof first) =>
            report.sections.filter((section) => section.section.startsWith('data/'));
          expect(data(second)).toEqual(data(first));
          expect(await rowsOf(restored.tenant.slug)).toEqual(await rowsOf(slug));
        },
      ),
      { numRuns: 12 },
    );
  }, 180_000);
});
