import type { Readable } from 'node:stream';
import { type IssuedApiKey, insertApiKey, prepareApiKey } from '../auth/api-key-store.js';
import type { Session, Transaction } from '../db/database.js';
import { qualified, quoteIdent } from '../db/identifiers.js';
import { addConstraintSql, createIndexSql, tableModel } from '../entities/entity-ddl.js';
import { storageVersion } from '../entities/entity-ledger.js';
import { type EntityVersion, loadVersions } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import { TenantBusyError } from '../isolation/tenant-locks.js';
import { placementOf } from '../isolation/tenant-placement.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import { type IsolationLevel, isBeingBuilt, type Tenant } from '../tenants/tenant.js';
import { translateConstraintError } from '../tenants/tenant-rules.js';
import type { ArchiveHeader, Section } from './archive/archive-format.js';
import { type ArchiveEvent, readArchive } from './archive/archive-reader.js';
import { type LifecycleDeps, lifecycleChange } from './lifecycle-deps.js';
import {
  addControlRecord,
  type ControlRecords,
  emptyControlRecords,
  freeHosts,
  insertControlRecords,
  takenEmails,
} from './restore-control.js';
import {
  archiveEntities,
  assertNotNewer,
  checkDataSections,
  copyIntoStagingSql,
  fillOrder,
  fillStatements,
  stagingTableSql,
} from './restore-plan.js';
import { type BackupDeps, CANONICAL_SETTINGS, tenantVersion } from './tenant-backup.js';
import { checkNewTenant, reserve } from './tenant-creation.js';

export interface RestoreOptions {
  /** The new tenant's slug (default: the archive's, when it is free). */
  readonly as?: string;
  /** Default: the archive's level (row when that cannot be had here, PGlite and database). */
  readonly isolation?: IsolationLevel;
  readonly server?: string;
  readonly key?: Buffer;
  /** Restore without the users whose emails other accounts hold (refused otherwise). */
  readonly skipConflictingUsers?: boolean;
  /**
   * Restore over an existing tenant (`as`, else the archive's own tenant): its rows become the
   * archive's, in one transaction; its users, keys and hosts stay as they are.
   */
  readonly replace?: boolean;
  /** Rows copied so far, after each piece of the archive. */
  readonly onProgress?: (progress: { readonly rows: number }) => void;
}

export interface RestoreReport {
  readonly tenant: Tenant;
  /** A new tenant's key, shown once; none when a tenant's rows were replaced. */
  readonly apiKey?: IssuedApiKey;
  readonly replaced: boolean;
  readonly rows: number;
  readonly entityVersion: { readonly archive: number; readonly restored: number };
  readonly users: number;
  readonly skippedUsers: readonly string[];
  readonly hosts: readonly string[];
  readonly skippedHosts: readonly string[];
  /** Records of the archive a new tenant does not get back (keys, clients, audit), by section. */
  readonly notRestored: Readonly<Record<string, number>>;
}

/** Pulls the reader's events one at a time: a section's chunks feed one COPY while the loop waits. */
class EventCursor {
  readonly #events: AsyncIterator<ArchiveEvent>;
  current: ArchiveEvent | undefined;

  constructor(events: AsyncIterator<ArchiveEvent>) {
    this.#events = events;
  }

  async advance(): Promise<ArchiveEvent | undefined> {
    const next = await this.#events.next();
    this.current = next.done ? undefined : next.value;
    return this.current;
  }

  /** The chunks of the current section, up to its `section-end` (where the cursor is left). */
  async *chunks(): AsyncIterable<Buffer> {
    while (this.current?.kind === 'chunk') {
      yield this.current.data;
      await this.advance();
    }
  }

  async close(): Promise<void> {
    await this.#events.return?.(undefined);
  }
}

/**
 * Restores an archive into a new tenant, at any isolation level and on any server, whatever the
 * archive's level was. The archive is read once: rows are copied into staging tables, moved into
 * the tenant's tables (converted from an older entity version the way a migration converts
 * them), and the control-plane records gathered; nothing becomes visible before the reader has
 * checked every section against the manifest. Until then the tenant is `restoring`: it never
 * resolves, and a failure removes it, as do `tenants repair` or a rerun after a crash.
 */
export async function restoreTenant(
  deps: BackupDeps,
  input: Readable,
  context: ActionContext,
  options: RestoreOptions = {},
): Promise<RestoreReport> {
  return restoreFromEvents(
    deps,
    readArchive(input, options.key ? { key: options.key } : {}),
    context,
    options,
  );
}

/**
 * `restoreTenant` from archive events made some other way (adopting a database streams its
 * tables as an archive's sections): the same checks, the same unroutable tenant until the end.
 */
export async function restoreFromEvents(
  deps: BackupDeps,
  events: AsyncIterator<ArchiveEvent>,
  context: ActionContext,
  options: RestoreOptions & { readonly auditAction?: string } = {},
): Promise<RestoreReport> {
  const cursor = new EventCursor(events);
  try {
    const first = await cursor.advance();
    if (first?.kind !== 'header') throw new Error('an archive starts with its header');
    return options.replace
      ? await restoreOver(deps, first.header, cursor, context, options)
      : await restoreFrom(deps, first.header, cursor, context, options);
  } finally {
    await cursor.close();
  }
}

async function restoreFrom(
  deps: BackupDeps,
  header: ArchiveHeader,
  cursor: EventCursor,
  context: ActionContext,
  options: RestoreOptions,
): Promise<RestoreReport> {
  const ledger = await loadVersions(deps.db.owner);
  const archive = archiveEntities(header, ledger);
  checkDataSections(header, archive);
  const source = header.tenant as { slug?: unknown; name?: unknown; isolation?: unknown; config?: unknown };
  const isolation =
    options.isolation ??
    (source.isolation === 'database' && deps.db.driver === 'pglite'
      ? 'row'
      : ((source.isolation as IsolationLevel | undefined) ?? 'row'));
  const slug = options.as ?? (typeof source.slug === 'string' ? source.slug : '');
  const checked = checkNewTenant(deps, {
    slug,
    name: typeof source.name === 'string' && source.name.length > 0 ? source.name : slug,
    isolation,
    ...(options.server === undefined ? {} : { server: options.server }),
    config: (source.config ?? {}) as never,
  });
  const target = await targetVersion(deps, isolation, ledger);
  assertNotNewer(archive, target);
  await removeUnfinishedRestore(deps, checked.slug, context);
  const prepared = prepareApiKey(deps.keyIterations());
  prepared.catch(() => undefined);
  const audit = {
    action: (options as { auditAction?: string }).auditAction ?? 'tenant.restore',
    target: checked.slug,
    tenantId: checked.id,
  };
  return deps.locks.with(checked.id, async (session) => {
    const server = await session
      .transaction((tx) => reserve(deps, tx, checked, 'restoring'))
      .catch((error: unknown) => {
        throw translateConstraintError(error);
      });
    const provisioned = { id: checked.id, isolation, server };
    try {
      await deps.provisioner.provision(session, provisioned, target);
      const tenant = await deps.store.load(deps.db.owner, checked.id);
      const loaded = await deps.data.bulkTransaction(
        tenant,
        (tx) => loadData(tx, deps, tenant, archive, target, cursor, options),
        { owner: true },
      );
      const records = loaded.records;
      const taken = await takenEmails(session, records);
      if (taken.length > 0 && !options.skipConflictingUsers) {
        throw new TenantryError(
          'conflict',
          `${taken.length} user(s) of the archive have emails other accounts hold: ${taken.slice(0, 10).join(', ')}${taken.length > 10 ? ', ...' : ''}; restore with --skip-conflicting-users to leave them out`,
          { field: 'users' },
        );
      }
      const hosts = await freeHosts(session, records, { id: tenant.id, slug: tenant.slug }, deps.rules());
      const apiKey = await prepared;
      return await lifecycleChange(
        deps,
        context,
        audit,
        async (tx, record) => {
          const users = await insertControlRecords(tx, tenant.id, records, new Set(taken), hosts.free);
          const { rowCount } = await tx.query(
            `UPDATE tenantry.tenants SET status = 'active', schema_version = $2, updated_at = now()
              WHERE id = $1 AND status = 'restoring' AND purge_requested_at IS NULL`,
            [tenant.id, target.version],
          );
          if (rowCount === 0)
            throw new TenantryError('conflict', 'the tenant was removed while it was restored');
          const issued = await insertApiKey(tx, tenant.id, apiKey);
          record.announce({ kind: 'tenant', tenantId: tenant.id });
          return {
            tenant: await deps.store.load(tx, tenant.id),
            apiKey: issued,
            replaced: false,
            rows: loaded.rows,
            entityVersion: { archive: archive.version, restored: target.version },
            users,
            skippedUsers: taken,
            hosts: hosts.free,
            skippedHosts: hosts.taken,
            notRestored: records.notRestored,
          };
        },
        session,
      );
    } catch (error) {
      await discardRestore(deps, session, provisioned).catch(() => undefined);
      await recordAudit(session, context, {
        ...audit,
        outcome: 'failure',
        details: { code: error instanceof TenantryError ? error.code : 'failed' },
      }).catch(() => undefined);
      throw error;
    }
  });
}

/** The entity version the new tenant's tables are at: the row tables' for a row tenant, the code's otherwise. */
async function targetVersion(
  deps: BackupDeps,
  isolation: IsolationLevel,
  ledger: readonly EntityVersion[],
): Promise<EntityVersion> {
  if (isolation !== 'row') return deps.storage.codeVersion();
  const number = await storageVersion(deps.db.owner, 'row');
  const version = ledger.find((entry) => entry.version === number);
  if (!version) throw new Error(`the row tables' entity version (${number ?? 'none'}) is not in the ledger`);
  return version;
}

/**
 * Copies the archive's rows into staging tables (as the owner: the runtime role may not make
 * temporary tables), then into the tenant's tables as the runtime role (row security checks every
 * row), all in one transaction of the tenant; then reads the control sections to the end of the archive: the
 * transaction commits only once the reader has checked every section against the manifest.
 */
async function loadData(
  tx: Transaction,
  deps: BackupDeps,
  tenant: Tenant,
  archive: EntityVersion,
  target: EntityVersion,
  cursor: EventCursor,
  options: RestoreOptions,
): Promise<{ rows: number; records: ControlRecords }> {
  await tx.query(CANONICAL_SETTINGS);
  let event = await cursor.advance();
  const direct = tenant.isolation !== 'row' && archive.version === target.version;
  const loaded = direct
    ? await copyIntoOwnTables(tx, tenant, target, cursor, options)
    : await copyThroughStaging(tx, deps, tenant, archive, target, cursor, options);
  event = cursor.current;
  const records = emptyControlRecords();
  for (let section = sectionOf(event); section; section = sectionOf(event)) {
    const name = section.name;
    let rest = '';
    for await (const data of cursor.chunks()) {
      const lines = (rest + data.toString('utf8')).split('\n');
      rest = lines.pop()!;
      for (const line of lines) addControlRecord(records, name, line);
    }
    if (rest.length > 0) addControlRecord(records, name, rest);
    event = await cursor.advance();
  }
  if (event?.kind !== 'end') throw new Error('the archive ended without its manifest');
  return { rows: loaded, records };
}

/**
 * Rows into staging tables, then into the tenant's tables as the runtime role: row security checks
 * every row (the tables may hold other tenants' rows), and an older entity version is converted.
 * Returns the rows copied; the cursor is left on the first event after the data sections.
 */
async function copyThroughStaging(
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
async function copyIntoOwnTables(
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

/**
 * Restores an archive over an existing tenant: the rows are staged beside its tables while it goes
 * on serving, then in the same transaction its rows are deleted and the archive's inserted (an
 * older entity version converted), committed only once every checksum matched. A failure, or a
 * kill, leaves the tenant's rows as they were. Its users, keys and hosts are left as they are.
 */
async function restoreOver(
  deps: BackupDeps,
  header: ArchiveHeader,
  cursor: EventCursor,
  context: ActionContext,
  options: RestoreOptions,
): Promise<RestoreReport> {
  if (options.isolation !== undefined || options.server !== undefined) {
    throw new TenantryError(
      'validation_failed',
      'a replace keeps the tenant where it is: isolation and server apply to a new tenant only',
      { field: options.isolation !== undefined ? 'isolation' : 'server' },
    );
  }
  const ledger = await loadVersions(deps.db.owner);
  const archive = archiveEntities(header, ledger);
  checkDataSections(header, archive);
  const source = header.tenant as { id?: unknown; slug?: unknown };
  const named = options.as ?? (typeof source.id === 'string' ? source.id : '');
  const tenant =
    (await deps.store.find(named)) ??
    (options.as === undefined && typeof source.slug === 'string'
      ? await deps.store.find(source.slug)
      : undefined);
  if (!tenant) {
    throw new TenantryError(
      'tenant_not_found',
      `no tenant "${named}" to replace: restore it as a new tenant`,
    );
  }
  if (isBeingBuilt(tenant.status)) {
    throw new TenantryError('conflict', `the tenant is still being built (${tenant.status})`);
  }
  const target = await tenantVersion(deps, tenant);
  assertNotNewer(archive, target);
  const audit = { action: 'tenant.restore.replace', target: tenant.slug, tenantId: tenant.id };
  return deps.locks.with(tenant.id, async (session) => {
    try {
      const rows = await deps.data.bulkTransaction(
        tenant,
        async (tx) => {
          await tx.query(CANONICAL_SETTINGS);
          await cursor.advance();
          const copied = await copyThroughStaging(tx, deps, tenant, archive, target, cursor, options, true);
          // The control sections are read to the manifest: nothing commits before it matched.
          let event = cursor.current;
          while (event && event.kind !== 'end') event = await cursor.advance();
          if (event?.kind !== 'end') throw new Error('the archive ended without its manifest');
          return copied;
        },
        { owner: true },
      );
      return await lifecycleChange(
        deps,
        context,
        { ...audit, details: { rows, entityVersion: archive.version } },
        async (tx, record) => {
          record.announce({ kind: 'tenant', tenantId: tenant.id });
          return {
            tenant: await deps.store.load(tx, tenant.id),
            replaced: true,
            rows,
            entityVersion: { archive: archive.version, restored: target.version },
            users: 0,
            skippedUsers: [],
            hosts: [],
            skippedHosts: [],
            notRestored: {},
          };
        },
        session,
      );
    } catch (error) {
      await recordAudit(session, context, {
        ...audit,
        outcome: 'failure',
        details: { code: error instanceof TenantryError ? error.code : 'failed' },
      }).catch(() => undefined);
      throw error;
    }
  });
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

function sectionOf(event: ArchiveEvent | undefined): Section | undefined {
  return event && (event.kind === 'chunk' || event.kind === 'section-end') ? event.section : undefined;
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

/** Drops what a restore built and removes its tenant; idempotent. */
async function discardRestore(
  deps: BackupDeps,
  session: Session,
  tenant: { readonly id: string; readonly isolation: IsolationLevel; readonly server: string | null },
): Promise<void> {
  await deps.provisioner.deprovision(session, tenant, await deps.storage.rowEntities());
  await session.query("DELETE FROM tenantry.tenants WHERE id = $1 AND status = 'restoring'", [tenant.id]);
}

/**
 * A `restoring` tenant under `slug` left by an earlier run that stopped (a crash, a kill) is
 * removed, so the rerun can have the slug. One a restore is working on is left alone: conflict.
 */
async function removeUnfinishedRestore(
  deps: BackupDeps,
  slug: string,
  context: ActionContext,
): Promise<void> {
  const found = await deps.store.findBySlug(slug);
  if (found?.status !== 'restoring') return;
  await removeRestoring(deps, found, context);
}

/** Removes a `restoring` tenant nobody is restoring (a repair, or a rerun); a conflict when one is at work. */
export async function removeRestoring(
  deps: LifecycleDeps,
  tenant: Tenant,
  context: ActionContext,
): Promise<void> {
  await deps.locks
    .with(
      tenant.id,
      async (session) => {
        const { rows } = await session.query<{ status: string }>(
          'SELECT status FROM tenantry.tenants WHERE id = $1',
          [tenant.id],
        );
        if (rows[0]?.status !== 'restoring') return;
        await deps.provisioner.deprovision(session, tenant, await deps.storage.rowEntities());
        await session.query("DELETE FROM tenantry.tenants WHERE id = $1 AND status = 'restoring'", [
          tenant.id,
        ]);
        await recordAudit(session, context, {
          action: 'tenant.restore',
          target: tenant.slug,
          tenantId: tenant.id,
          outcome: 'failure',
          details: { code: 'unfinished_restore_removed' },
        });
      },
      { wait: false },
    )
    .catch((error: unknown) => {
      if (error instanceof TenantBusyError) {
        throw new TenantryError('conflict', `tenant "${tenant.slug}" is being restored right now`, {
          field: 'slug',
        });
      }
      throw error;
    });
}
