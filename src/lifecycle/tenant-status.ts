import { revokeTenantSessions } from '../auth/session-store.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import type { Tenant } from '../tenants/tenant.js';
import { isBeingBuilt } from '../tenants/tenant.js';
import { type LifecycleDeps, lifecycleChange } from './lifecycle-deps.js';

/**
 * Activates or deactivates a tenant: an inactive tenant resolves to 403 `tenant_inactive`, its
 * keys stop authenticating and its users' sessions end (reactivating it does not bring them back).
 */
export async function setTenantStatus(
  deps: LifecycleDeps,
  idOrSlug: string,
  status: 'active' | 'inactive',
  context: ActionContext,
): Promise<Tenant> {
  const current = await deps.store.get(idOrSlug);
  const action = status === 'active' ? 'tenant.activate' : 'tenant.deactivate';
  return lifecycleChange(
    deps,
    context,
    { action, target: current.slug, tenantId: current.id },
    async (tx, record) => {
      const locked = await deps.store.lockLive(tx, current.id, idOrSlug);
      if (isBeingBuilt(locked.status)) {
        throw new TenantryError('conflict', `the tenant is still being built (${locked.status})`, {
          field: 'status',
        });
      }
      if (locked.status === status) return locked;
      // An operator's decision replaces the sync's: a tenant deactivated by hand stays so.
      await tx.query(
        'UPDATE tenantry.tenants SET status = $2, config_released_at = NULL, updated_at = now() WHERE id = $1',
        [current.id, status],
      );
      if (status === 'inactive') await revokeTenantSessions(tx, current.id);
      record.announce({ kind: 'tenant', tenantId: current.id });
      return deps.store.load(tx, current.id);
    },
  );
}
