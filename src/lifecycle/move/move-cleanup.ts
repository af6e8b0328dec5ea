import type { Queryable, Session } from '../../db/database.js';
import type { Entity } from '../../entities/entity.js';
import { TenantryError } from '../../errors.js';
import type { TenantDataAccess } from '../../isolation/tenant-db.js';
import type { Tenant } from '../../tenants/tenant.js';
import type { LifecycleDeps } from '../lifecycle-deps.js';
import { dropThroughSeal, removeCapture } from './move-capture.js';
import { forgetMove, type MoveRecord, type Place, placeOf, samePlace } from './move-record.js';

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

function deprovision(
  deps: CleanupDeps,
  session: Session,
  id: string,
  place: Place,
  rowEntities: readonly Entity[],
  beforeRowDelete?: (tx: Queryable) => Promise<void>,
): Promise<void> {
  return deps.provisioner.deprovision(
    session,
    { id, isolation: place.isolation, server: place.server },
    rowEntities,
    beforeRowDelete,
  );
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
  const source = tenantAt(tenant, record.from);
  const stopCapture = () =>
    deps.data.bulkTransaction(source, (tx) => removeCapture(tx, tenant.id), { owner: true });
  if (!flipped) {
    await stopCapture();
    await deprovision(deps, session, tenant.id, record.to, rowEntities);
  } else {
    // The old copy goes while still sealed (a process that has not heard of the move must not
    // write into it meanwhile); a row copy's own delete passes the seal. A database copy takes
    // its capture with it; the others' triggers and notes go after.
    await deprovision(deps, session, tenant.id, record.from, rowEntities, (tx) =>
      dropThroughSeal(tx, tenant.id),
    );
    if (record.from.isolation !== 'database') await stopCapture();
  }
  await forgetMove(session, tenant.id);
  return flipped ? 'source' : 'target';
}
