import Type, { type Static } from 'typebox';
import type { TenantUsage } from './tenant-usage.js';

/** A tenant's usage on the wire: one member per kind of quota, and the limits in force. */
export const TenantUsageSchema = Type.Object({
  rows: Type.Object({
    byEntity: Type.Record(Type.String(), Type.Integer()),
    total: Type.Integer(),
  }),
  storage: Type.Object({
    bytes: Type.Integer(),
    estimated: Type.Boolean({
      description: "true for row tenants: their share of shared tables (size × the tenant's rows / all rows)",
    }),
    measuredAt: Type.String({ format: 'date-time' }),
  }),
  apiKeys: Type.Object({ live: Type.Integer({ description: 'keys neither revoked nor expired' }) }),
  users: Type.Object({ total: Type.Integer({ description: 'users of the tenant, active or not' }) }),
  limits: Type.Object({
    maxRows: Type.Optional(Type.Integer()),
    maxRowsPerEntity: Type.Optional(Type.Integer()),
    maxStorageMb: Type.Optional(Type.Number()),
    maxApiKeys: Type.Optional(Type.Integer()),
    maxUsers: Type.Optional(Type.Integer()),
  }),
});

export type TenantUsageView = Static<typeof TenantUsageSchema>;

export function tenantUsageView(usage: TenantUsage): TenantUsageView {
  return {
    rows: { byEntity: { ...usage.rows.byEntity }, total: usage.rows.total },
    storage: {
      bytes: usage.storage.bytes,
      estimated: usage.storage.estimated,
      measuredAt: usage.storage.measuredAt.toISOString(),
    },
    apiKeys: { live: usage.apiKeys.live },
    users: { total: usage.users.total },
    limits: { ...usage.limits },
  };
}
