import Type from 'typebox';
import { TenantUsageSchema, tenantUsageView } from '../../lifecycle/tenant-usage-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

export const tenantUsage = defineOperation({
  name: 'tenants.usage',
  summary:
    "A tenant's usage against its limits, measured now: rows, storage (estimated for row tenants), live API keys, users",
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
  output: TenantUsageSchema,
  http: [{ method: 'GET', path: '/admin/tenants/:idOrSlug/usage', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant }, call) =>
    tenantUsageView(await call.engine.usage.of(await call.tenant(tenant), { fresh: true })),
});
