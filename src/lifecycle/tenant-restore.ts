import type { Readable } from 'node:stream';
import { insertApiKey, prepareApiKey } from '../auth/api-key-store.js';
import type { Session, Transaction } from '../db/database.js';
import { storageVersion } from '../entities/entity-ledger.js';
import { type EntityVersion, loadVersions } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import { TenantBusyError } from '../isolation/tenant-locks.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import type { IsolationLevel, Tenant } from '../tenants/tenant.js';
import { translateConstraintError } from '../tenants/tenant-rules.js';
import type { ArchiveHeader } from './archive/archive-format.js';
import { type ArchiveEvent, readArchive } from './archive/archive-reader.js';
import { EventCursor, sectionOf } from './archive/event-cursor.js';
import { type LifecycleDeps, lifecycleChange } from './lifecycle-deps.js';
import {
  addControlRecord,
  type ControlRecords,
  emptyControlRecords,
  freeHosts,
  insertControlRecords,
  takenEmails,
} from './restore-control.js';
import { copyIntoOwnTables, copyThroughStaging } from './restore-load.js';
import { archiveEntities, assertNotNewer, checkDataSections } from './restore-plan.js';
import { restoreOver } from './restore-replace.js';
import type { RestoreOptions, RestoreReport } from './restore-types.js';
import { type BackupDeps, CANONICAL_SETTINGS } from './tenant-backup.js';
import { type CheckedTenant, checkNewTenant, reserve } from './tenant-creation.js';

export type { RestoreOptions, RestoreReport } from './restore-types.js';

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
  options: RestoreOptions = {},
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
  const checked = newTenantOf(deps, header, options);
  const isolation = checked.isolation;
  const target = await targetVersion(deps, isolation, ledger);
  assertNotNewer(archive, target);
  await removeUnfinishedRestore(deps, checked.slug, context);
  const prepared = prepareApiKey(deps.keyIterations());
  prepared.catch(() => undefined);
  const audit = {
    action: options.auditAction ?? 'tenant.restore',
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

/** The new tenant an archive makes: its own slug, name, level and config unless the options say otherwise. */
function newTenantOf(deps: BackupDeps, header: ArchiveHeader, options: RestoreOptions): CheckedTenant {
  const source = header.tenant as { slug?: unknown; name?: unknown; isolation?: unknown; config?: unknown };
  const isolation =
    options.isolation ??
    (source.isolation === 'database' && deps.db.driver === 'pglite'
      ? 'row'
      : ((source.isolation as IsolationLevel | undefined) ?? 'row'));
  const slug = options.as ?? (typeof source.slug === 'string' ? source.slug : '');
  return checkNewTenant(deps, {
    slug,
    name: typeof source.name === 'string' && source.name.length > 0 ? source.name : slug,
    isolation,
    ...(options.server === undefined ? {} : { server: options.server }),
    config: (source.config ?? {}) as never,
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
