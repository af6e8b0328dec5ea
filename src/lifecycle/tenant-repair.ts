import { type IssuedApiKey, insertApiKey, prepareApiKey } from '../auth/api-key-store.js';
import { SchemaDriftError } from '../entities/entity-schema.js';
import type { ActionContext } from '../runtime/actor.js';
import type { Tenant, TenantStatus } from '../tenants/tenant.js';
import { activateProvisioned, type LifecycleDeps, lifecycleChange } from './lifecycle-deps.js';
import { purgePending, purgeTenant } from './tenant-removal.js';
import { removeRestoring } from './tenant-restore.js';

export interface RepairReport {
  readonly tenant: Tenant;
  readonly action: 'provisioned' | 'purged' | 'removed' | 'checked' | 'none';
  readonly detail: string;
  /** A new key for a tenant whose provisioning was finished, shown once. */
  readonly apiKey?: IssuedApiKey;
  readonly differences?: readonly string[];
}

export interface PendingReport {
  readonly repaired: string[];
  readonly purged: string[];
  /** Unfinished restores removed. */
  readonly removed: string[];
  readonly failed: { tenantId: string; error: string }[];
}

/**
 * Finishes what a crash interrupted for one tenant: a `provisioning` tenant is built and
 * activated (with a new API key, shown once: nobody ever saw the first one); a `restoring` one is
 * removed; a deleted tenant
 * waiting for its purge is purged; a live tenant's tables are checked against its version.
 */
export async function repairTenant(
  deps: LifecycleDeps,
  idOrSlug: string,
  context: ActionContext,
): Promise<RepairReport> {
  const tenant = await deps.store.get(idOrSlug, { includeDeleted: true });
  // A purge that was asked for wins over everything: never bring such a tenant back.
  if (await purgePending(deps, tenant.id)) {
    await purgeTenant(deps, tenant.id, context);
    return { tenant: { ...tenant, status: 'deleted' }, action: 'purged', detail: 'the purge was finished' };
  }
  if (tenant.status === 'deleted') {
    return { tenant, action: 'none', detail: 'deleted without purge: nothing to repair' };
  }
  if (tenant.status === 'provisioning') return finishProvisioning(deps, tenant, context);
  if (tenant.status === 'restoring') {
    // The archive is not at hand: an unfinished restore is removed (a rerun of it starts over).
    await removeRestoring(deps, tenant, context);
    return {
      tenant: { ...tenant, status: 'deleted' },
      action: 'removed',
      detail: 'an unfinished restore was removed; run the restore again',
    };
  }
  const differences = await deps.storage.check(tenant);
  return {
    tenant,
    action: 'checked',
    detail:
      differences.length === 0
        ? `tables match entity version ${tenant.schemaVersion}`
        : `tables differ from entity version ${tenant.schemaVersion}:\n  ${differences.join('\n  ')}`,
    differences,
  };
}

async function finishProvisioning(
  deps: LifecycleDeps,
  tenant: Tenant,
  context: ActionContext,
): Promise<RepairReport> {
  const version = await deps.storage.codeVersion();
  const prepared = await prepareApiKey(deps.keyIterations());
  const issued = await deps.locks.with(
    tenant.id,
    async (session) => {
      const { rows } = await session.query<{ pending: boolean }>(
        `SELECT purge_requested_at IS NOT NULL AS pending FROM tenantry.tenants
          WHERE id = $1 AND status = 'provisioning'`,
        [tenant.id],
      );
      if (rows.length === 0 || rows[0]?.pending) return undefined;
      try {
        await deps.provisioner.provision(session, tenant, version);
      } catch (error) {
        if (!(error instanceof SchemaDriftError)) throw error;
        // Built at another version before the crash: nobody ever saw this tenant, so its
        // half-built storage is dropped and built again at the code's version.
        await deps.provisioner.deprovision(session, tenant, []);
        await deps.provisioner.provision(session, tenant, version);
      }
      const audit = { action: 'tenant.repair', target: tenant.slug, tenantId: tenant.id };
      return lifecycleChange(
        deps,
        context,
        audit,
        async (tx, record) => {
          await activateProvisioned(tx, tenant.id, version.version);
          record.announce({ kind: 'tenant', tenantId: tenant.id });
          return insertApiKey(tx, tenant.id, prepared);
        },
        session,
      );
    },
    { wait: false },
  );
  const repaired = (await deps.store.findById(tenant.id)) ?? tenant;
  return issued
    ? { tenant: repaired, action: 'provisioned', detail: 'provisioning was finished', apiKey: issued }
    : { tenant: repaired, action: 'none', detail: 'nothing to finish' };
}

/**
 * Tenants a crash left half done: `provisioning` ones nobody is working on, and deleted ones
 * waiting for their purge. `migrate` finishes them after the fleet.
 */
export async function finishPendingTenants(
  deps: LifecycleDeps,
  context: ActionContext,
): Promise<PendingReport> {
  const { rows } = await deps.db.owner.query<{ id: string; status: TenantStatus }>(
    `SELECT id, status FROM tenantry.tenants
      WHERE status IN ('provisioning', 'restoring') OR purge_requested_at IS NOT NULL ORDER BY id`,
  );
  const result: PendingReport = { repaired: [], purged: [], removed: [], failed: [] };
  for (const row of rows) {
    if (await deps.locks.isBusy(row.id)) continue;
    try {
      const report = await repairTenant(deps, row.id, context);
      if (report.action === 'provisioned') result.repaired.push(row.id);
      if (report.action === 'purged') result.purged.push(row.id);
      if (report.action === 'removed') result.removed.push(row.id);
    } catch (error) {
      result.failed.push({ tenantId: row.id, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return result;
}
