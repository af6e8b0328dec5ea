import Type from 'typebox';
import { deleteTenant as remove } from '../../lifecycle/tenant-removal.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, Flag, TenantRef } from '../refs.js';

export const deleteTenant = defineOperation({
  name: 'tenants.delete',
  summary:
    'Delete a tenant (soft: it stops resolving at once, its record stays); with purge, also remove its data, keys and record',
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef, purge: Type.Optional(Flag) }, { additionalProperties: false }),
  output: TenantViewSchema,
  audit: ['tenant.delete', 'tenant.purge'],
  http: [
    {
      method: 'DELETE',
      path: '/admin/tenants/:idOrSlug',
      scope: 'admin',
      params: BY_TENANT,
      query: ['purge'],
    },
  ],
  run: async ({ tenant, purge }, { engine, context }) =>
    tenantView(await remove(engine.lifecycle, tenant, context, { purge: purge === true })),
});
