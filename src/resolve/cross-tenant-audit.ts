import type { Queryable } from '../db/database.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';

/** One credential of a refused request and the tenant it names. */
export interface CrossTenantClaim {
  /** `host`, `apiKey`, `session`, `client`. */
  readonly source: string;
  readonly tenantId: string;
}

/**
 * Audits credentials that name different tenants (403 `cross_tenant`), once under each tenant
 * named: the tenant that was reached for and the tenant whose credential was used both find it
 * in their own trail.
 */
export async function recordCrossTenant(
  db: Queryable,
  context: ActionContext,
  claims: readonly CrossTenantClaim[],
  target?: string,
): Promise<void> {
  const details = Object.fromEntries(
    claims.map((claim) => [`${claim.source === 'apiKey' ? 'key' : claim.source}Tenant`, claim.tenantId]),
  );
  for (const tenantId of new Set(claims.map((claim) => claim.tenantId))) {
    await recordAudit(db, context, {
      action: 'resolve.cross_tenant',
      outcome: 'denied',
      tenantId,
      target,
      details,
    });
  }
}
