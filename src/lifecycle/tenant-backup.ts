import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Writable } from 'node:stream';
import type { Queryable, Transaction } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
import type { Entity } from '../entities/entity.js';
import { SEARCH_COLUMN, tableModel } from '../entities/entity-ddl.js';
import { storageVersion } from '../entities/entity-ledger.js';
import { type EntityVersion, loadVersions, serialiseEntities } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { TenantDataAccess } from '../isolation/tenant-db.js';
import { placementOf } from '../isolation/tenant-placement.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import { isUuid } from '../tenants/slug.js';
import { isBeingBuilt, type Tenant } from '../tenants/tenant.js';
import { countLines, type DataSection, type Section, type SectionSummary } from './archive/archive-format.js';
import { ArchiveWriter } from './archive/archive-writer.js';
import { CONTROL_PARTS, controlPartLines } from './archive/control-parts.js';
import type { LifecycleDeps } from './lifecycle-deps.js';

/** What a backup reads with, beyond the lifecycle's components. */
export interface BackupDeps extends LifecycleDeps {
  readonly data: TenantDataAccess;
  readonly tenantryVersion: string;
}

export interface BackupProgress {
  /** The section being written, `<kind>/<name>`. */
  readonly section: string;
  readonly rows: number;
  /** The planned rows (an estimate for schema and database tenants, taken at the start). */
  readonly total: number;
}

export interface BackupOptions {
  readonly includeAudit?: boolean;
  /** The 32-byte backup key: the archive is encrypted with it when given. */
  readonly key?: Buffer;
  /** gzip level, 1 to 9 (default 3). */
  readonly compressionLevel?: number;
  readonly onProgress?: (progress: BackupProgress) => void;
}

export interface BackupReport {
  readonly tenant: Tenant;
  readonly entityVersion: number;
  readonly sections: readonly (SectionSummary & { readonly section: string })[];
  readonly rows: number;
  readonly encrypted: boolean;
}

/**
 * Settings that make COPY text and JSON the same whatever the server's defaults: an archive
 * restores the values it holds on any server, and two backups of the same rows are the same bytes.
 */
export const CANONICAL_SETTINGS = `SELECT set_config('DateStyle', 'ISO, MDY', true), set_config('TimeZone', 'UTC', true),
  set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true),
  set_config('bytea_output', 'hex', true)`;

/** On PGlite a COPY result is held whole: a table leaves in pages of this many rows. */
const PAGE_ROWS = 20_000;

/** The columns of an entity an archive holds, `id` first: all but `tenant_id` and the generated search column. */
export function archivedColumns(entity: Entity): string[] {
  return tableModel(entity)
    .columns.filter((column) => column.name !== 'tenant_id' && column.name !== SEARCH_COLUMN)
    .map((column) => column.name);
}

/** The tenant as the header records it. */
function tenantRecord(tenant: Tenant): Record<string, unknown> {
  return {
    id: tenant.id,
    slug: tenant.slug,
    name: tenant.name,
    status: tenant.status,
    isolation: tenant.isolation,
    server: tenant.server,
    plan: tenant.config.plan ?? null,
    config: tenant.config,
  };
}

/** The entity version a tenant's tables are at; `ledger` when the caller read it already. */
export async function tenantVersion(
  deps: LifecycleDeps,
  tenant: Tenant,
  ledger?: readonly EntityVersion[],
): Promise<EntityVersion> {
  const number =
    tenant.isolation === 'row' ? await storageVersion(deps.db.owner, 'row') : tenant.schemaVersion;
  const version = (ledger ?? (await loadVersions(deps.db.owner))).find((entry) => entry.version === number);
  if (!version) {
    throw new TenantryError(
      'conflict',
      `the tenant's entity version (${number ?? 'none'}) is not in the ledger`,
    );
  }
  return version;
}

/**
 * Writes one tenant's archive to `out`: the tenant's rows as of one snapshot (a read-only,
 * repeatable-read transaction of the tenant: it goes on serving reads and writes), then its
 * control-plane records as of a second snapshot taken right after. Memory holds one chunk of
 * rows at a time (on PGlite, one page). Audited as `tenant.backup`.
 */
export async function backupTenant(
  deps: BackupDeps,
  idOrSlug: string,
  out: Writable,
  context: ActionContext,
  options: BackupOptions = {},
): Promise<BackupReport> {
  const tenant = await deps.store.get(idOrSlug);
  if (isBeingBuilt(tenant.status)) {
    throw new TenantryError('conflict', `the tenant is still being built (${tenant.status})`);
  }
  if (!isUuid(tenant.id)) throw new Error(`unexpected tenant id ${tenant.id}`);
  const version = await tenantVersion(deps, tenant);
  const entities = version.entities.filter((entity) => entity.scope === 'tenant');
  const dataSections: DataSection[] = entities.map((entity) => ({
    kind: 'data',
    name: entity.name,
    columns: archivedColumns(entity),
  }));
  const controlSections: Section[] = CONTROL_PARTS.filter(
    (part) => !part.optional || options.includeAudit,
  ).map((part) => ({ kind: 'control', name: part.name }));
  const writer = await ArchiveWriter.create(
    out,
    {
      tenantryVersion: deps.tenantryVersion,
      createdAt: new Date().toISOString(),
      tenant: tenantRecord(tenant),
      entities: {
        version: version.version,
        digest: version.digest,
        declaration: JSON.parse(serialiseEntities(version.entities)),
      },
      sections: [...dataSections, ...controlSections],
      includesAudit: options.includeAudit === true,
    },
    {
      ...(options.key ? { key: options.key } : {}),
      ...(options.compressionLevel === undefined ? {} : { compressionLevel: options.compressionLevel }),
    },
  );
  const summaries: (SectionSummary & { section: string })[] = [];
  let done = 0;
  let total = 0;
  const progress = (section: string, rows: number) =>
    options.onProgress?.({ section, rows: done + rows, total: Math.max(total, done + rows) });
  const schema = placementOf(tenant).schema;
  await deps.data.bulkTransaction(
    tenant,
    async (tx) => {
      await tx.query(CANONICAL_SETTINGS);
      // Rows leave in key order by walking the key's index: without this the planner may read the
      // tenant's rows another way and sort them, which costs more the more tenants share a table.
      await tx.query("SELECT set_config('enable_sort', 'off', true)");
      total = await plannedRows(tx, tenant, schema, entities);
      for (const section of dataSections) {
        const key = `data/${section.name}`;
        const summary = await writer.writeSection(
          section,
          counted(tableRows(tx, qualified(schema, section.name), section.columns, tenant.id), (rows) =>
            progress(key, rows),
          ),
        );
        done += summary.rows;
        summaries.push({ section: key, ...summary });
      }
    },
    { snapshot: true },
  );
  await deps.db.owner.transaction(
    async (tx) => {
      await tx.query(CANONICAL_SETTINGS);
      for (const section of controlSections) {
        const part = CONTROL_PARTS.find((candidate) => candidate.name === section.name)!;
        const summary = await writer.writeSection(section, controlPartLines(tx, part, tenant.id));
        summaries.push({ section: `control/${section.name}`, ...summary });
      }
    },
    { snapshot: true },
  );
  await writer.finish();
  await recordAudit(deps.db.owner, context, {
    action: 'tenant.backup',
    target: tenant.slug,
    tenantId: tenant.id,
    outcome: 'success',
    details: { rows: done, entityVersion: version.version, encrypted: options.key !== undefined },
  });
  return {
    tenant,
    entityVersion: version.version,
    sections: summaries,
    rows: done,
    encrypted: options.key !== undefined,
  };
}

/**
 * `backupTenant` into `file`: written under a temporary name beside it and renamed once whole,
 * so a crash or a failure never leaves a file under the final name (nor replaces an older one).
 */
export async function backupTenantToFile(
  deps: BackupDeps,
  idOrSlug: string,
  file: string,
  context: ActionContext,
  options: BackupOptions = {},
): Promise<BackupReport> {
  const partial = join(dirname(file), `.${randomBytes(6).toString('hex')}.tenantry-partial`);
  const out = createWriteStream(partial, { flags: 'wx', mode: 0o600 });
  try {
    const report = await backupTenant(deps, idOrSlug, out, context, options);
    await rename(partial, file);
    return report;
  } catch (error) {
    out.destroy();
    await rm(partial, { force: true });
    throw error;
  }
}

/** A table's rows of the tenant as COPY text, `id` order; on PGlite in pages (keyset on `id`). */
async function* tableRows(
  tx: Transaction,
  table: string,
  columns: readonly string[],
  tenantId: string,
): AsyncIterable<Buffer> {
  const list = columns.map(quoteIdent).join(', ');
  // COPY takes no parameters: the tenant id is a checked UUID, the last id one PostgreSQL wrote.
  const query = (after: string | undefined, limit: string) =>
    `COPY (SELECT ${list} FROM ${table} WHERE tenant_id = '${tenantId}'::uuid` +
    `${after ? ` AND id > '${after}'::uuid` : ''} ORDER BY id${limit}) TO STDOUT`;
  if (!tx.copyHoldsResult) {
    yield* tx.copyOut(query(undefined, ''));
    return;
  }
  let after: string | undefined;
  for (;;) {
    let page: Buffer | undefined;
    for await (const piece of tx.copyOut(query(after, ` LIMIT ${PAGE_ROWS}`))) {
      page = page ? Buffer.concat([page, piece]) : piece;
    }
    if (!page || page.length === 0) return;
    yield page;
    const lastLine = page.lastIndexOf(0x0a, page.length - 2) + 1;
    const id = page.subarray(lastLine, page.indexOf(0x09, lastLine)).toString();
    if (!isUuid(id)) throw new Error(`unexpected id in COPY output: ${id.slice(0, 40)}`);
    after = id;
    if (countLines(page) < PAGE_ROWS) return;
  }
}

async function* counted(
  source: AsyncIterable<Buffer>,
  report: (rows: number) => void,
): AsyncIterable<Buffer> {
  let rows = 0;
  let reported = 0;
  for await (const piece of source) {
    rows += countLines(piece);
    if (rows - reported >= 10_000) {
      report(rows);
      reported = rows;
    }
    yield piece;
  }
  report(rows);
}

/**
 * Rows the backup will write, for progress: counted for a row tenant (its rows share the tables),
 * the planner's estimate for a table of its own (a count would read the whole table once more).
 */
async function plannedRows(
  tx: Queryable,
  tenant: Tenant,
  schema: string,
  entities: readonly Entity[],
): Promise<number> {
  if (entities.length === 0) return 0;
  if (tenant.isolation !== 'row') {
    const { rows } = await tx.query<{ rows: string }>(
      `SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint::text AS rows FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = ANY($2::text[])`,
      [schema, entities.map((entity) => entity.name)],
    );
    return Number(rows[0]?.rows ?? 0);
  }
  const { rows } = await tx.query<{ rows: string }>(
    `SELECT (${entities
      .map((entity) => `(SELECT count(*) FROM ${qualified(schema, entity.name)} WHERE tenant_id = $1)`)
      .join(' + ')})::text AS rows`,
    [tenant.id],
  );
  return Number(rows[0]?.rows ?? 0);
}
