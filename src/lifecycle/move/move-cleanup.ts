import type { Session } from '../../db/database.js';
import type { Entity } from '../../entities/entity.js';
import { TenantryError } from '../../errors.js';
import type { TenantDataAccess } from '../../isolation/tenant-db.js';
import type { Tenant } from '../../tenants/tenant.js';
import type { LifecycleDeps } from '../lifecycle-deps.js';
import { removeCapture } from './move-capture.js';
import { forgetMove, type MoveRecord, type Place, samePlace } from './move-record.js';

export interface CleanupDeps extends LifecycleDeps {
  readonly data: TenantDataAccess;
}

/** The tenant as if it were at `place`: what placement, pools and settings derive from. */
export function tenantAt(tenant: Tenant, place: Place): Tenant {
  return {
    ...tenant,
    isolation: place.isolation,
    server: place.isolation === 'database' ? place.server : null,
  };
}

function placeOf(tenant: Tenant): Place {
  return { isolation: tenant.isolation, server: tenant.server };
}

/**
 * Drops the copy a move left behind and forgets the move: before the flip, the target being
 * filled (the source goes on serving, its capture stops); after it, the sealed source. The copy
 * that serves is never touched: the tenant row says which one that is. Idempotent; the caller
 * holds the tenant's lock on `session`.
 */
export async function dropOtherCopy(
  deps: CleanupDeps,
  session: Session,
  tenant: Tenant,
  record: MoveRecord,
  rowEntities: readonly Entity[],
): Promise<'target' | 'source'> {
  const serving = placeOf(tenant);
  const flipped = samePlace(serving, record.to);
  if (!flipped && !samePlace(serving, record.from)) {
    throw new TenantryError(
      'conflict',
      `the tenant is neither where its move began nor where it was going: repair by hand`,
    );
  }
  const other = flipped ? record.from : record.to;
  const source = tenantAt(tenant, record.from);
  // The source's triggers go first: a row source's rows cannot be deleted through its seal. A
  // database source takes them with it when it is dropped (and may be gone already, on a rerun).
  if (!(flipped && record.from.isolation === 'database')) {
    await deps.data.bulkTransaction(source, (tx) => removeCapture(tx, tenant.id), { owner: true });
  }
  await deps.provisioner.deprovision(
    session,
    { id: tenant.id, isolation: other.isolation, server: other.server },
    rowEntities,
  );
  await forgetMove(session, tenant.id);
  return flipped ? 'source' : 'target';
}
