import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { pack as createPack, type Pack } from 'tar-stream';
import type { Queryable } from '../db/database.js';
import { qualified } from '../db/identifiers.js';
import { SEARCH_COLUMN } from '../entities/entity-ddl.js';
import { placementOf } from '../isolation/tenant-placement.js';
import type { Tenant } from '../tenants/tenant.js';
import { CHUNK_BYTES } from './archive/archive-format.js';
import { type BackupDeps, CANONICAL_SETTINGS, tenantVersion } from './tenant-backup.js';

const PAGE_ROWS = 2_000;

export interface ExportReport {
  readonly rows: number;
  readonly entities: Readonly<Record<string, number>>;
  readonly users: number;
}

/**
 * A tenant's own data for the tenant itself (data portability), as a tar.gz:
 *
 *   export.json                       what it is: the tenant, when, the entities and their fields
 *   entities/<entity>/<n>.jsonl       the rows, one JSON object a line, in parts of a few MiB
 *   users.jsonl                       the tenant's users: email, name, status, roles; no secret
 *
 * Rows are read as the tenant, in one snapshot, under row security like any request of it.
 */
export async function exportTenant(
  deps: BackupDeps,
  tenant: Tenant,
  out: Writable,
  onProgress: (rows: number) => void = () => undefined,
): Promise<ExportReport> {
  const version = await tenantVersion(deps, tenant);
  const entities = version.entities.filter((entity) => entity.scope === 'tenant');
  const pack = createPack();
  const done = pipeline(pack, createGzip(), out);
  done.catch(() => undefined);
  await entry(
    pack,
    'export.json',
    JSON.stringify(
      {
        format: 'tenantry-export',
        formatVersion: 1,
        exportedAt: new Date().toISOString(),
        tenant: { slug: tenant.slug, name: tenant.name },
        entities: entities.map((entity) => ({
          name: entity.name,
          fields: entity.fields.map((field) => ({ name: field.name, type: field.type })),
        })),
      },
      null,
      2,
    ),
  );
  const counts: Record<string, number> = {};
  let rows = 0;
  await deps.data.bulkTransaction(
    tenant,
    async (tx) => {
      await tx.query(CANONICAL_SETTINGS);
      for (const entity of entities) {
        let part = 0;
        let pending: string[] = [];
        let pendingBytes = 0;
        const flush = async () => {
          if (pending.length === 0) return;
          await entry(
            pack,
            `entities/${entity.name}/${String(part).padStart(6, '0')}.jsonl`,
            pending.join(''),
          );
          part += 1;
          pending = [];
          pendingBytes = 0;
        };
        counts[entity.name] = 0;
        for await (const line of entityLines(tx, qualified(placementOf(tenant).schema, entity.name))) {
          pending.push(line);
          pendingBytes += line.length;
          counts[entity.name]! += 1;
          rows += 1;
          if (rows % 10_000 === 0) onProgress(rows);
          if (pendingBytes >= CHUNK_BYTES) await flush();
        }
        await flush();
      }
    },
    { snapshot: true },
  );
  const users = await userLines(deps.db.owner, tenant.id);
  await entry(pack, 'users.jsonl', users.join(''));
  pack.finalize();
  await done;
  onProgress(rows);
  return { rows, entities: counts, users: users.length };
}

async function* entityLines(tx: Queryable, table: string): AsyncIterable<string> {
  let after: string | null = null;
  for (;;) {
    const page: { rows: { line: string; id: string }[] } = await tx.query<{ line: string; id: string }>(
      `SELECT (to_jsonb(t) - 'tenant_id' - '${SEARCH_COLUMN}')::text AS line, t.id::text AS id FROM ${table} t
        WHERE t.tenant_id = current_setting('tenantry.tenant_id')::uuid AND ($1::uuid IS NULL OR t.id > $1::uuid)
        ORDER BY t.id LIMIT ${PAGE_ROWS}`,
      [after],
    );
    for (const row of page.rows) yield `${row.line}\n`;
    if (page.rows.length < PAGE_ROWS) return;
    after = page.rows.at(-1)!.id;
  }
}

async function userLines(db: Queryable, tenantId: string): Promise<string[]> {
  const { rows } = await db.query<{ line: string }>(
    `SELECT json_build_object('id', u.id, 'email', u.email, 'name', u.name, 'status', u.status,
              'createdAt', u.created_at, 'lastLoginAt', u.last_login_at,
              'roles', coalesce((SELECT json_agg(r.name ORDER BY r.name) FROM tenantry.user_roles ur
                                   JOIN tenantry.roles r ON r.id = ur.role_id WHERE ur.user_id = u.id), '[]'::json))::text AS line
       FROM tenantry.users u WHERE u.tenant_id = $1 ORDER BY u.id`,
    [tenantId],
  );
  return rows.map((row) => `${row.line}\n`);
}

function entry(pack: Pack, name: string, content: string): Promise<void> {
  const buffer = Buffer.from(content);
  return new Promise((resolve, reject) => {
    pack.entry({ name, size: buffer.length, mtime: new Date() }, buffer, (error) =>
      error ? reject(error) : resolve(),
    );
  });
}
