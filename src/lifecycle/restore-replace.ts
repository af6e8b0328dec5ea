import { loadVersions } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import { isBeingBuilt } from '../tenants/tenant.js';
import type { ArchiveHeader } from './archive/archive-format.js';
import type { EventCursor } from './archive/event-cursor.js';
import { lifecycleChange } from './lifecycle-deps.js';
import { copyThroughStaging } from './restore-load.js';
import { archiveEntities, assertNotNewer, checkDataSections } from './restore-plan.js';
import type { RestoreOptions, RestoreReport } from './restore-types.js';
import { type BackupDeps, CANONICAL_SETTINGS, tenantVersion } from './tenant-backup.js';

/**
 * Restores an archive over an existing tenant: the rows are staged beside its tables while it goes
 * on serving, then in the same transaction its rows are deleted and the archive's inserted (an
 * older entity version converted), committed only once every checksum matched. A failure, or a
 * kill, leaves the tenant's rows as they were. Its users, keys and hosts are left as they are.
 */
export async function restoreOver(
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
  const target = await tenantVersion(deps, tenant, ledger);
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
