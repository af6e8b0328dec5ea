import { TenantryError } from '../errors.js';

/** The limits enforced when something is created, by their name under `limits`. */
export const QUOTA_NAMES = ['maxRows', 'maxRowsPerEntity', 'maxStorageMb', 'maxApiKeys', 'maxUsers'] as const;
export type QuotaName = (typeof QUOTA_NAMES)[number];

/**
 * A creation refused because the tenant is at one of its quotas: 403 `quota_exceeded` whose
 * `field` names the quota (`limits.maxApiKeys`). It carries the tenant's slug, so the refusal is
 * counted by tenant wherever it reaches a caller (`countQuotaRefusal`), admin routes included.
 */
export class QuotaExceededError extends TenantryError {
  readonly quota: QuotaName;
  readonly tenantSlug: string;

  constructor(tenantSlug: string, quota: QuotaName, message: string) {
    super('quota_exceeded', `quota ${quota}: ${message}`, { field: `limits.${quota}` });
    this.quota = quota;
    this.tenantSlug = tenantSlug;
  }
}

/** Refusals counted already: an operation's refusal passes both the runner and the HTTP error hook. */
const counted = new WeakSet<QuotaExceededError>();

/**
 * Counts a quota refusal in the metrics (`tenantry_quota_refused_total`), once however many
 * layers it crosses; anything else is ignored. Called where errors leave the engine: the
 * operation runner and the HTTP error hook (entity routes are not operations).
 */
export function countQuotaRefusal(
  metrics: { quotaRefused(tenant: string, quota: QuotaName): void },
  error: unknown,
): void {
  if (!(error instanceof QuotaExceededError) || counted.has(error)) return;
  counted.add(error);
  metrics.quotaRefused(error.tenantSlug, error.quota);
}
