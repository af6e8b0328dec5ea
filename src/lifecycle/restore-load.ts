import type { Queryable, Transaction } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
import type { Entity } from '../entities/entity.js';
import { addConstraintSql, createIndexSql, tableModel } from '../entities/entity-ddl.js';
import type { EntityVersion } from '../entities/entity-versions.js';
import { placementOf } from '../isolation/tenant-placement.js';
import type { Tenant } from '../tenants/tenant.js';
import { type EventCursor, sectionOf } from './archive/event-cursor.js';
import { copyIntoStagingSql, fillOrder, fillStatements, stagingTableSql } from './restore-plan.js';
import type { RestoreOptions } from './restore-types.js';
import type { BackupDeps } from './tenant-backup.js';

/**
 * Rows into staging tables, then into the tenant's tables as the runtime role: row security checks
 * every row (the tables may hold other tenants' rows), and an older entity version is converted.
 * Returns the rows copied; the cursor is left on the first event after the data sections.
 */
export async function copyThroughStaging(
  tx: Transaction,
  deps: BackupDeps,
  tenant: Tenant,
  archive: EntityVersion,
  target: EntityVersion,
  cursor: EventCursor,
  options: RestoreOptions,
  clearFirst = false,
): Promise<number> {
  const archived = new Map(archive.entities.map((entity) => [entity.name, entity]));
  const staged = new Map<string, string>();
  let rows = 0;
  let event = cursor.current;
  for (let section = sectionOf(event); section?.kind === 'data'; section = sectionOf(event)) {
    const stage = `tenantry_restore_${staged.size}`;
    await tx.query(stagingTableSql(stage, archived.get(section.name)!));
    await tx.query(`GRANT SELECT ON pg_temp.${quoteIdent(stage)} TO ${quoteIdent(deps.data.runtimeRole)}`);
    rows += await tx.copyIn(copyIntoStagingSql(stage, section), progressOf(cursor.chunks(), options));
    staged.set(section.name, stage);
    // The cursor is at the section's end now.
    event = await cursor.advance();
  }
  await deps.data.asRuntimeRole(tx);
  const schema = placementOf(tenant).schema;
  if (clearFirst) await clearTenantRows(tx, schema, tenant.id, target);
  const fills = fillOrder(target.entities).map(({ entity, late }) => {
    const stage = staged.get(entity.name);
    return stage
      ? fillStatements(schema, tenant.id, entity, late, archived.get(entity.name), stage)
      : undefined;
  });
  for (const fill of fills) if (fill) await tx.query(fill.insert);
  for (const fill of fills) if (fill?.update) await tx.query(fill.update);
  return rows;
}

/**
 * A schema or database tenant at the archive's own version: its tables are its alone and empty,
 * so rows are copied straight into them, as pg_restore does. The owner copies (COPY FROM under row
 * security is refused), the new tenant's id filled in by a default; keys and indexes are dropped
 * first and made again after (`withKeysRebuilt`).
 */
export async function copyIntoOwnTables(
  tx: Transaction,
  tenant: Tenant,
  target: EntityVersion,
  cursor: EventCursor,
  options: RestoreOptions,
): Promise<number> {
  const schema = placementOf(tenant).schema;
  let rows = 0;
  await withKeysRebuilt(tx, schema, target.entities, async () => {
    let event = cursor.current;
    for (let section = sectionOf(event); section?.kind === 'data'; section = sectionOf(event)) {
      const table = qualified(schema, section.name);
      // Every row is the new tenant's: its id comes from the column's default for the length of the
      // copy (the archive's rows carry no tenant id), which costs nothing per row.
      await tx.query(`ALTER TABLE ${table} ALTER COLUMN tenant_id SET DEFAULT '${tenant.id}'::uuid`);
      rows += await tx.copyIn(
        `COPY ${table} (${section.columns.map(quoteIdent).join(', ')}) FROM STDIN`,
        progressOf(cursor.chunks(), options),
      );
      await tx.query(`ALTER TABLE ${table} ALTER COLUMN tenant_id DROP DEFAULT`);
      event = await cursor.advance();
    }
  });
  return rows;
}

/**
 * Runs `fill` on a tenant's own, empty tables with their foreign keys, keys, unique constraints
 * and indexes dropped, and makes them again after: each is built once from all rows (sorted), not
 * row by row, and every row is checked once. In the caller's transaction: a failure leaves the
 * tables as they were.
 */
export async function withKeysRebuilt(
  tx: Queryable,
  schema: string,
  entities: readonly Entity[],
  fill: () => Promise<void>,
): Promise<void> {
  const models = entities.filter((entity) => entity.scope === 'tenant').map(tableModel);
  const keys = (model: (typeof models)[number]) =>
    model.constraints.filter((constraint) => /^(PRIMARY KEY|UNIQUE) /.test(constraint.definition));
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const fk of model.foreignKeys)
      await tx.query(`ALTER TABLE ${table} DROP CONSTRAINT ${quoteIdent(fk.name)}`);
  }
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const index of model.indexes) await tx.query(`DROP INDEX ${qualified(schema, index.name)}`);
    for (const key of keys(model))
      await tx.query(`ALTER TABLE ${table} DROP CONSTRAINT ${quoteIdent(key.name)}`);
  }
  await fill();
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const key of keys(model)) await tx.query(addConstraintSql(table, key, schema));
    for (const index of model.indexes) await tx.query(createIndexSql(table, index));
  }
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const fk of model.foreignKeys) await tx.query(addConstraintSql(table, fk, schema));
  }
}

/**
 * Deletes the tenant's rows from its tables, as the runtime role (row security keeps the delete to
 * the tenant). References that would refuse it (`restrict`) are emptied first where they may be;
 * tables go referencing-first.
 */
async function clearTenantRows(
  tx: Transaction,
  schema: string,
  tenantId: string,
  target: EntityVersion,
): Promise<void> {
  const order = fillOrder(target.entities);
  const where = `tenant_id = '${tenantId}'::uuid`;
  for (const { entity } of order) {
    const restricting = entity.fields.filter(
      (field) => field.ref && !field.required && (field.ref.onDelete ?? 'restrict') === 'restrict',
    );
    if (restricting.length === 0) continue;
    await tx.query(
      `UPDATE ${qualified(schema, entity.name)} SET ${restricting.map((field) => `${quoteIdent(field.name)} = NULL`).join(', ')} WHERE ${where}`,
    );
  }
  for (const { entity } of [...order].reverse()) {
    await tx.query(`DELETE FROM ${qualified(schema, entity.name)} WHERE ${where}`);
  }
}

async function* progressOf(chunks: AsyncIterable<Buffer>, options: RestoreOptions): AsyncIterable<Buffer> {
  // Told after each piece; the caller measures (the operation reads how far the file is read).
  for await (const chunk of chunks) {
    options.onProgress?.();
    yield chunk;
  }
}
