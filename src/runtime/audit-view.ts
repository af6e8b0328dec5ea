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
