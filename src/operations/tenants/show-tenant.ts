import Type from 'typebox';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

export const showTenant = defineOperation({
  name: 'tenants.show',
  summary: 'Show a tenant (a deleted one too, by its id)',
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
  output: TenantViewSchema,
  http: [{ method: 'GET', path: '/admin/tenants/:idOrSlug', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant }, call) => tenantView(await call.tenant(tenant, { includeDeleted: true })),
});
