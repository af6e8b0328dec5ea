import type { Transaction } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
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
    rows += await tx.copyIn(copyIntoStagingSql(stage, section), progressOf(cursor.chunks(), rows, options));
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
 * security is refused), each line given the new tenant's id; foreign keys and secondary indexes
 * are dropped first and made again after, checking every reference once. All in the one
 * transaction: a failure leaves the tables as they were.
 */
export async function copyIntoOwnTables(
  tx: Transaction,
  tenant: Tenant,
  target: EntityVersion,
  cursor: EventCursor,
  options: RestoreOptions,
): Promise<number> {
  const schema = placementOf(tenant).schema;
  const models = target.entities.filter((entity) => entity.scope === 'tenant').map(tableModel);
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const fk of model.foreignKeys)
      await tx.query(`ALTER TABLE ${table} DROP CONSTRAINT ${quoteIdent(fk.name)}`);
    for (const index of model.indexes) await tx.query(`DROP INDEX ${qualified(schema, index.name)}`);
  }
  let rows = 0;
  let event = cursor.current;
  for (let section = sectionOf(event); section?.kind === 'data'; section = sectionOf(event)) {
    const table = qualified(schema, section.name);
    const columns = ['tenant_id', ...section.columns].map(quoteIdent).join(', ');
    rows += await tx.copyIn(
      `COPY ${table} (${columns}) FROM STDIN`,
      withTenantColumn(progressOf(cursor.chunks(), rows, options), tenant.id),
    );
    event = await cursor.advance();
  }
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const index of model.indexes) await tx.query(createIndexSql(table, index));
  }
  for (const model of models) {
    const table = qualified(schema, model.entity.name);
    for (const fk of model.foreignKeys) await tx.query(addConstraintSql(table, fk, schema));
  }
  return rows;
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

/** COPY text with `<tenant id>\t` put before every line. */
async function* withTenantColumn(chunks: AsyncIterable<Buffer>, tenantId: string): AsyncIterable<Buffer> {
  const prefix = Buffer.from(`${tenantId}\t`);
  let atLineStart = true;
  for await (const chunk of chunks) {
    const parts: Buffer[] = [];
    let from = 0;
    while (from < chunk.length) {
      if (atLineStart) parts.push(prefix);
      const end = chunk.indexOf(0x0a, from);
      if (end === -1) {
        parts.push(chunk.subarray(from));
        atLineStart = false;
        break;
      }
      parts.push(chunk.subarray(from, end + 1));
      atLineStart = true;
      from = end + 1;
    }
    yield Buffer.concat(parts);
  }
}

async function* progressOf(
  chunks: AsyncIterable<Buffer>,
  before: number,
  options: RestoreOptions,
): AsyncIterable<Buffer> {
  let rows = before;
  for await (const chunk of chunks) {
    for (let at = chunk.indexOf(0x0a); at !== -1; at = chunk.indexOf(0x0a, at + 1)) rows += 1;
    options.onProgress?.({ rows });
    yield chunk;
  }
}
