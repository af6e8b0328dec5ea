import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type pg from 'pg';
import { to as copyToStdout } from 'pg-copy-streams';
import { parseDocument } from 'yaml';
import type { IssuedApiKey } from '../../auth/api-key-store.js';
import { qualified } from '../../db/identifiers.js';
import { newClient } from '../../db/postgres-driver.js';
import { normaliseEntities } from '../../entities/entity-config.js';
import { entitiesDigest, serialiseEntities } from '../../entities/entity-versions.js';
import { TenantryError } from '../../errors.js';
import type { ActionContext } from '../../runtime/actor.js';
import type { IsolationLevel, Tenant } from '../../tenants/tenant.js';
import {
  ARCHIVE_FORMAT,
  ARCHIVE_FORMAT_VERSION,
  type ArchiveHeader,
  countLines,
  type DataSection,
} from '../archive/archive-format.js';
import type { ArchiveEvent } from '../archive/archive-reader.js';
import { archivedColumns, type BackupDeps, CANONICAL_SETTINGS } from '../tenant-backup.js';
import { restoreFromEvents } from '../tenant-restore.js';
import { type AdoptPlan, planAdoption, type TablePlan } from './adopt-plan.js';
import { readSourceSchema } from './source-schema.js';

export interface AdoptSource {
  /** A PostgreSQL URL of the single-tenant application's database. */
  readonly from: string;
  readonly schema?: string;
  /** Only these tables (default: every table of the schema). */
  readonly tables?: readonly string[];
}

export interface AdoptReport {
  readonly tenant: Tenant;
  readonly apiKey?: IssuedApiKey;
  readonly rows: number;
  readonly plan: AdoptPlan;
}

async function connect(url: string): Promise<pg.Client> {
  const client = newClient({ connectionString: url, application_name: 'tenantry-adopt' });
  try {
    await client.connect();
  } catch (error) {
    throw new TenantryError('unavailable', 'the database to adopt cannot be reached', { cause: error });
  }
  return client;
}

/** Reads the source's tables and proposes how they become entities; changes nothing anywhere. */
export async function proposeAdoption(source: AdoptSource): Promise<AdoptPlan> {
  const client = await connect(source.from);
  try {
    const schema = await readSourceSchema(client, source.schema ?? 'public', source.tables);
    const missing = (source.tables ?? []).filter(
      (name) => !schema.tables.some((table) => table.name === name),
    );
    if (missing.length > 0) {
      throw new TenantryError(
        'validation_failed',
        `no table ${missing.join(', ')} in schema ${schema.schema}`,
        {
          field: 'tables',
        },
      );
    }
    return planAdoption(schema);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Writes the proposal's entities into a config file (YAML), keeping everything else in it and the
 * entities it declares already (an adopted entity of the same name is replaced).
 */
export function writeProposal(file: string, plan: AdoptPlan): void {
  const document = parseDocument(existsSync(file) ? readFileSync(file, 'utf8') : '');
  if (document.errors.length > 0) {
    throw new TenantryError(
      'validation_failed',
      `${file} is not valid YAML: ${document.errors[0]!.message}`,
      {
        field: 'writeConfig',
      },
    );
  }
  for (const [name, entity] of Object.entries(plan.entities)) document.setIn(['entities', name], entity);
  writeFileSync(file, document.toString());
}

/**
 * Copies the source's tables into a new tenant, as the proposal maps them. The deployment must
 * declare the proposed entities already (`--write-config`, then `tenantry migrate`): the rows go
 * into tables of the current entity version. The source is read in one snapshot and streamed as
 * an archive's sections into the restore machinery: the tenant is unroutable until every row is
 * in, and a failure or a kill leaves nothing routable (`repair` removes what it left).
 */
export async function adoptDatabase(
  deps: BackupDeps,
  source: AdoptSource,
  target: { readonly tenant: string; readonly isolation?: IsolationLevel },
  context: ActionContext,
  onProgress?: (rows: number) => void,
): Promise<AdoptReport> {
  const plan = await proposeAdoption(source);
  if (plan.tables.length === 0) {
    throw new TenantryError('validation_failed', 'no table of the source can be adopted', {
      field: 'tables',
    });
  }
  const version = await deps.storage.codeVersion();
  const declared = new Map(version.entities.map((entity) => [entity.name, entity]));
  const proposed = normaliseEntities(plan.entities);
  const differing = proposed.filter((entity) => {
    const current = declared.get(entity.name);
    return !current || entitiesDigest([current]) !== entitiesDigest([entity]);
  });
  if (differing.length > 0) {
    throw new TenantryError(
      'validation_failed',
      `the config does not declare ${differing.map((entity) => entity.name).join(', ')} as proposed: write the proposal with --write-config FILE, run tenantry migrate, then adopt`,
      { field: 'entities' },
    );
  }
  const sections: DataSection[] = version.entities
    .filter((entity) => entity.scope === 'tenant')
    .map((entity) => ({ kind: 'data', name: entity.name, columns: archivedColumns(entity) }));
  const header: ArchiveHeader = {
    format: ARCHIVE_FORMAT,
    formatVersion: ARCHIVE_FORMAT_VERSION,
    tenantryVersion: deps.tenantryVersion,
    createdAt: new Date().toISOString(),
    tenant: {
      slug: target.tenant,
      name: target.tenant,
      isolation: target.isolation ?? deps.rules().tenancy.defaultIsolation,
    },
    entities: {
      version: version.version,
      digest: version.digest,
      declaration: JSON.parse(serialiseEntities(version.entities)),
    },
    sections,
    includesAudit: false,
  };
  const byEntity = new Map(plan.tables.map((table) => [table.entity, table]));
  const client = await connect(source.from);
  let rows = 0;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(CANONICAL_SETTINGS);
    const events = (async function* (): AsyncGenerator<ArchiveEvent> {
      yield { kind: 'header', header };
      for (const section of sections) {
        const table = byEntity.get(section.name);
        if (table) {
          const copy = client.query(copyToStdout(copySql(plan.schema, table, section.columns)));
          for await (const data of copy as AsyncIterable<Buffer>) {
            rows += countLines(data);
            onProgress?.(rows);
            yield { kind: 'chunk', section, data };
          }
        }
        yield { kind: 'section-end', section, summary: { rows: 0, bytes: 0, sha256: '' } };
      }
      yield {
        kind: 'end',
        manifest: { format: ARCHIVE_FORMAT, formatVersion: ARCHIVE_FORMAT_VERSION, sections: {} },
      };
    })();
    const report = await restoreFromEvents(deps, events, context, {
      as: target.tenant,
      ...(target.isolation ? { isolation: target.isolation } : {}),
      auditAction: 'tenant.adopt',
    });
    return { tenant: report.tenant, ...(report.apiKey ? { apiKey: report.apiKey } : {}), rows, plan };
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

/** The COPY that reads one source table as the entity's archived columns. */
function copySql(schema: string, table: TablePlan, columns: readonly string[]): string {
  const bySource = new Map(table.columns.map((column) => [column.column, column.sql]));
  const list = columns.map((column) => bySource.get(column) ?? 'NULL').join(', ');
  return `COPY (SELECT ${list} FROM ${qualified(schema, table.table)} t) TO STDOUT`;
}
