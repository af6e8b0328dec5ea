import type { Database, Queryable } from '../db/database.js';
import type { Entity } from '../entities/entity.js';
import type { EntityVersion } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { DatabaseServers } from '../isolation/database-servers.js';
import type { TenantLocks } from '../isolation/tenant-locks.js';
import type { TenantProvisioner } from '../isolation/tenant-provisioner.js';
import type { ActionContext } from '../runtime/actor.js';
import { type AuditIntent, auditedChange, type ChangeRecord } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { Tenant } from '../tenants/tenant.js';
import type { TenancyRules } from '../tenants/tenant-rules.js';
import { translateConstraintError } from '../tenants/tenant-rules.js';
import type { TenantStore } from '../tenants/tenant-store.js';

/** What the lifecycle needs of the entity-schema ledger. */
export interface TenantStorage {
  /** The code's entity version (registered on first use): new tenants are built at it. */
  codeVersion(): Promise<EntityVersion>;
  /** The entities the row-level tables are at (what a row tenant's purge deletes from). */
  rowEntities(): Promise<readonly Entity[]>;
  /** Differences between a tenant's tables and its recorded version. */
  check(tenant: Tenant): Promise<string[]>;
}

/** The components a tenant's creation, status changes, deletion and repair work with. */
export interface LifecycleDeps {
  readonly db: Database;
  readonly bus: ChangeBus;
  readonly store: TenantStore;
  readonly rules: () => TenancyRules;
  /** PBKDF2 iterations of new API keys. */
  readonly keyIterations: () => number;
  readonly provisioner: TenantProvisioner;
  readonly locks: TenantLocks;
  readonly servers: DatabaseServers;
  readonly storage: TenantStorage;
}

/** An audited change of the lifecycle (see `auditedChange`), constraint violations answered as conflicts. */
export function lifecycleChange<T>(
  deps: LifecycleDeps,
  context: ActionContext,
  audit: AuditIntent,
  work: (tx: Queryable, record: ChangeRecord) => Promise<T>,
  session: Parameters<typeof auditedChange>[1] = deps.db.owner,
): Promise<T> {
  return auditedChange({ bus: deps.bus, translate: translateConstraintError }, session, context, audit, work);
}

/**
 * Makes a provisioned tenant live, unless it changed meanwhile: a purge requested while it was
 * being built (which waits for the tenant's lock) must find it still unroutable, not live.
 */
export async function activateProvisioned(tx: Queryable, id: string, version: number): Promise<void> {
  const { rowCount } = await tx.query(
    `UPDATE tenantry.tenants SET status = 'active', schema_version = $2, updated_at = now()
      WHERE id = $1 AND status = 'provisioning' AND purge_requested_at IS NULL`,
    [id, version],
  );
  if (rowCount === 0) {
    throw new TenantryError('conflict', 'the tenant was deleted or changed while it was provisioned');
  }
}
