import { qualified, quoteIdent } from '../db/identifiers.js';
import type { Entity } from '../entities/entity.js';
import { type ColumnModel, SEARCH_COLUMN, tableModel } from '../entities/entity-ddl.js';
import { type EntityVersion, entitiesDigest, parseEntities } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { ArchiveHeader, DataSection } from './archive/archive-format.js';
import { archivedColumns } from './tenant-backup.js';

function refused(message: string): TenantryError {
  return new TenantryError('validation_failed', `the archive cannot be restored: ${message}`, {
    field: 'archive',
  });
}

/**
 * The archive's entities, found in this deployment's ledger by their digest. An archive of
 * entities this deployment never declared is refused (another Tenantry's, or a tampered header);
 * one newer than the tables it would go into is refused as newer (exit 2, both versions named).
 */
export function archiveEntities(header: ArchiveHeader, ledger: readonly EntityVersion[]): EntityVersion {
  const declared = header.entities as { version?: unknown; digest?: unknown; declaration?: unknown };
  if (!Number.isInteger(declared.version) || !Array.isArray(declared.declaration)) {
    throw refused('its header does not name its entity version and declaration');
  }
  let entities: Entity[];
  try {
    entities = parseEntities(declared.declaration);
  } catch {
    throw refused('its entity declaration is not well formed');
  }
  const digest = entitiesDigest(entities);
  if (declared.digest !== undefined && declared.digest !== digest) {
    throw refused('its entity declaration does not match the digest it records');
  }
  const version = declared.version as number;
  const known = ledger.find((entry) => entry.digest === digest);
  if (known) return known;
  const latest = ledger.at(-1)?.version ?? 0;
  if (version > latest) {
    throw new TenantryError(
      'validation_failed',
      `the archive is at entity version ${version}, newer than this deployment's latest (${latest}): deploy the newer entities first`,
      { field: 'entities' },
    );
  }
  throw refused(
    `its entities (version ${version}) are not any version this deployment declared: an archive of another Tenantry's entities`,
  );
}

/** Refuses an archive newer than the tables it would be restored into. */
export function assertNotNewer(archive: EntityVersion, target: EntityVersion): void {
  if (archive.version > target.version) {
    throw new TenantryError(
      'validation_failed',
      `the archive is at entity version ${archive.version}, newer than the tables it would go into (version ${target.version}): migrate first`,
      { field: 'entities' },
    );
  }
}

/** Each data section must be one of the archive's tenant entities, with the columns a backup writes. */
export function checkDataSections(header: ArchiveHeader, archive: EntityVersion): void {
  const entities = new Map(
    archive.entities.filter((entity) => entity.scope === 'tenant').map((entity) => [entity.name, entity]),
  );
  const sections = header.sections.filter((section): section is DataSection => section.kind === 'data');
  for (const section of sections) {
    const entity = entities.get(section.name);
    if (!entity) throw refused(`its section data/${section.name} is no entity of its declaration`);
    if (archivedColumns(entity).join(',') !== section.columns.join(',')) {
      throw refused(`its section data/${section.name} does not have the columns of its entity`);
    }
  }
  if (sections.length !== entities.size) throw refused('it lacks the rows of some of its entities');
}

/** A staging table: the archive's rows of one entity, as they are, with no constraint. */
export function stagingTableSql(stage: string, entity: Entity): string {
  const columns = columnsOf(entity).map((column) => `${quoteIdent(column.name)} ${column.type}`);
  return `CREATE TEMP TABLE ${quoteIdent(stage)} (${columns.join(', ')}) ON COMMIT DROP`;
}

export function copyIntoStagingSql(stage: string, section: DataSection): string {
  return `COPY pg_temp.${quoteIdent(stage)} (${section.columns.map(quoteIdent).join(', ')}) FROM STDIN`;
}

function columnsOf(entity: Entity): ColumnModel[] {
  return tableModel(entity).columns.filter(
    (column) => column.name !== 'tenant_id' && column.name !== SEARCH_COLUMN,
  );
}

/**
 * The order the target tables are filled in: an entity after the ones it references (a reference
 * to itself is checked at the end of its one INSERT). In a cycle, the references that point to a
 * table not filled yet are set by an UPDATE once every table is.
 */
export function fillOrder(entities: readonly Entity[]): { entity: Entity; late: string[] }[] {
  const tenantEntities = entities.filter((entity) => entity.scope === 'tenant');
  const remaining = new Map(tenantEntities.map((entity) => [entity.name, entity]));
  const order: Entity[] = [];
  while (remaining.size > 0) {
    const ready = [...remaining.values()].find((entity) =>
      entity.fields.every(
        (field) => !field.ref || field.ref.entity === entity.name || !remaining.has(field.ref.entity),
      ),
    );
    // A cycle: the first entity left goes now, its forward references filled in later.
    const next = ready ?? remaining.values().next().value!;
    order.push(next);
    remaining.delete(next.name);
  }
  const placed = new Set<string>();
  return order.map((entity) => {
    placed.add(entity.name);
    const late = entity.fields
      .filter((field) => field.ref && !placed.has(field.ref.entity))
      .map((field) => field.name);
    return { entity, late };
  });
}

/**
 * What fills one target column from the staged archive rows: the archive's value (converted when
 * the column's type changed since, the default when a now-required column was empty), or the
 * column's default when the archive's entity lacks it. The same changes a migration makes.
 */
function fillExpression(target: ColumnModel, archived: ColumnModel | undefined): string {
  if (!archived) return target.default ?? 'NULL';
  let value = `s.${quoteIdent(target.name)}`;
  if (archived.type !== target.type) value = `(${value})::${target.type}`;
  if (target.notNull && !archived.notNull && target.default !== undefined) {
    value = `coalesce(${value}, ${target.default})`;
  }
  return value;
}

export interface FillStatements {
  readonly insert: string;
  /** Sets the references left out of the insert (a cycle); undefined when there are none. */
  readonly update: string | undefined;
}

/** The statements that move one entity's staged rows into the tenant's table. */
export function fillStatements(
  schema: string,
  tenantId: string,
  target: Entity,
  late: readonly string[],
  archived: Entity | undefined,
  stage: string,
): FillStatements | undefined {
  if (!archived) return undefined;
  const archivedColumnsByName = new Map(columnsOf(archived).map((column) => [column.name, column]));
  const columns = columnsOf(target);
  const table = qualified(schema, target.name);
  const stagedTable = `pg_temp.${quoteIdent(stage)}`;
  const values = columns.map((column) =>
    late.includes(column.name) ? 'NULL' : fillExpression(column, archivedColumnsByName.get(column.name)),
  );
  // The tenant id is a UUID the control plane made; COPY and INSERT ... SELECT take no parameters here.
  const insert =
    `INSERT INTO ${table} (tenant_id, ${columns.map((column) => quoteIdent(column.name)).join(', ')}) ` +
    `SELECT '${tenantId}'::uuid, ${values.join(', ')} FROM ${stagedTable} s`;
  const lateColumns = columns.filter(
    (column) => late.includes(column.name) && archivedColumnsByName.has(column.name),
  );
  const update =
    lateColumns.length === 0
      ? undefined
      : `UPDATE ${table} t SET ${lateColumns
          .map(
            (column) =>
              `${quoteIdent(column.name)} = ${fillExpression(column, archivedColumnsByName.get(column.name))}`,
          )
          .join(', ')} FROM ${stagedTable} s WHERE t.tenant_id = '${tenantId}'::uuid AND t.id = s.id`;
  return { insert, update };
}
