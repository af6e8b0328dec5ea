import Type, { type Static } from 'typebox';
import type { AuditEntry } from './audit-log.js';

/** An audit entry as every front end shows it. */
export const AuditEntrySchema = Type.Object({
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  actor: Type.String(),
  action: Type.String(),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  target: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.String(),
  clientAddress: Type.Union([Type.String(), Type.Null()]),
  details: Type.Record(Type.String(), Type.Unknown()),
});
export type AuditEntryView = Static<typeof AuditEntrySchema>;

export function auditEntryView(entry: AuditEntry): AuditEntryView {
  return { ...entry, at: entry.at.toISOString(), details: { ...entry.details } };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * An entry as a tenant reads it: the ids of other tenants it names (the tenant a cross-tenant
 * attempt came from, or went to) become "another tenant".
 */
export function withoutOtherTenants(entry: AuditEntryView, tenantId: string): AuditEntryView {
  if (!entry.action.startsWith('resolve.') && !entry.action.startsWith('client.')) return entry;
  const details: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(entry.details)) {
    details[key] =
      key.endsWith('Tenant') && typeof value === 'string' && UUID.test(value) && value !== tenantId
        ? 'another tenant'
        : value;
  }
  const other = (value: string | null) => value !== null && UUID.test(value) && value !== tenantId;
  return { ...entry, target: other(entry.target) ? 'another tenant' : entry.target, details };
}
