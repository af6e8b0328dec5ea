import { revokeTenantKeys } from '../auth/api-key-store.js';
import { revokeTenantSessions } from '../auth/session-store.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { assertNotDeclared } from '../tenants/managed-tenants.js';
import { isUuid } from '../tenants/slug.js';
import type { Tenant } from '../tenants/tenant.js';
import { isBeingBuilt } from '../tenants/tenant.js';
import { clip } from '../tenants/tenant-store.js';
import { type LifecycleDeps, lifecycleChange } from './lifecycle-deps.js';

/**
 * Soft delete: the tenant stops resolving at once (its keys are revoked and its hosts released
 * first), its slug becomes free, and its record stays for the audit trail. With `purge`, its
 * data, keys and record are removed too.
 */
export async function deleteTenant(
  deps: LifecycleDeps,
  idOrSlug: string,
  context: ActionContext,
  options: { purge?: boolean | undefined } = {},
): Promise<Tenant> {
  const found = options.purge ? await toPurge(deps, idOrSlug) : await deps.store.get(idOrSlug);
  if (options.purge && (found.status === 'deleted' || isBeingBuilt(found.status))) {
    await deps.db.owner.query(
      'UPDATE tenantry.tenants SET purge_requested_at = coalesce(purge_requested_at, now()) WHERE id = $1',
      [found.id],
    );
    await purgeTenant(deps, found.id, context);
    return { ...found, status: 'deleted' };
  }
  const deleted = await softDelete(deps, found, idOrSlug, context, options.purge === true);
  if (options.purge) await purgeTenant(deps, deleted.id, context);
  return deleted;
}

/**
 * The tenant a purge names: by id, any tenant; by slug, the live tenant holding it, or else the
 * one soft-deleted tenant that had it (its slug was freed by the soft delete). When several
 * deleted tenants had the slug, the caller must say which, by id.
 */
async function toPurge(deps: LifecycleDeps, idOrSlug: string): Promise<Tenant> {
  if (isUuid(idOrSlug.toLowerCase())) return deps.store.get(idOrSlug, { includeDeleted: true });
  const live = await deps.store.find(idOrSlug);
  if (live) return live;
  const deleted = await deps.store.findDeletedBySlug(idOrSlug, 2);
  if (deleted.length > 1) {
    throw new TenantryError(
      'conflict',
      `several deleted tenants had the slug "${clip(idOrSlug)}": purge one by its id`,
    );
  }
  if (!deleted[0]) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
  return deleted[0];
}

function softDelete(
  deps: LifecycleDeps,
  current: Tenant,
  idOrSlug: string,
  context: ActionContext,
  purge: boolean,
): Promise<Tenant> {
  const audit = { action: 'tenant.delete', target: current.slug, tenantId: current.id };
  return lifecycleChange(deps, context, audit, async (tx, record) => {
    await assertNotDeclared(tx, current, context);
    const revoked = await revokeTenantKeys(tx, current.id);
    await revokeTenantSessions(tx, current.id);
    await tx.query('DELETE FROM tenantry.tenant_hosts WHERE tenant_id = $1', [current.id]);
    const { rowCount } = await tx.query(
      `UPDATE tenantry.tenants SET status = 'deleted', deleted_at = now(), updated_at = now(),
              purge_requested_at = CASE WHEN $2 THEN now() END
        WHERE id = $1 AND status <> 'deleted'`,
      [current.id, purge],
    );
    if (rowCount === 0) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
    record.announce({ kind: 'tenant', tenantId: current.id });
    // Its tenant-scoped cache goes with it, in every process.
    record.announce({ kind: 'cache', tenantId: current.id });
    for (const keyId of revoked) record.announce({ kind: 'key', tenantId: current.id, keyId });
    return deps.store.load(tx, current.id);
  });
}

/**
 * Removes a deleted tenant for good: its rows, schema or database, its keys and its record (the
 * audit trail stays). The tenant stopped resolving when it was deleted (keys revoked and hosts
 * released first), so nothing routable is left while this runs; it is resumable.
 */
export async function purgeTenant(deps: LifecycleDeps, id: string, context: ActionContext): Promise<void> {
  // Read before taking the lock: a lock holder must not wait for a second pool connection.
  const rowEntities = await deps.storage.rowEntities();
  await deps.locks.with(id, async (session) => {
    const tenant = await deps.store.findById(id, session);
    if (!tenant) return;
    if (tenant.status !== 'deleted' && !isBeingBuilt(tenant.status)) {
      throw new TenantryError('conflict', 'only a deleted tenant can be purged', { field: 'status' });
    }
    await deps.provisioner.deprovision(session, tenant, rowEntities);
    const audit = {
      action: 'tenant.purge',
      target: tenant.slug,
      tenantId: id,
      details: { isolation: tenant.isolation },
    };
    await lifecycleChange(
      deps,
      context,
      audit,
      async (tx) => {
        await tx.query('DELETE FROM tenantry.tenants WHERE id = $1', [id]);
      },
      session,
    );
  });
}

/** Whether a purge of the tenant was asked for and has not finished. */
export async function purgePending(deps: LifecycleDeps, id: string): Promise<boolean> {
  const { rows } = await deps.db.owner.query(
    'SELECT 1 FROM tenantry.tenants WHERE id = $1 AND purge_requested_at IS NOT NULL',
    [id],
  );
  return rows.length > 0;
}
