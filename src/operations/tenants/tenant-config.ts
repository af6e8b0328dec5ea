import Type from 'typebox';
import { TenantConfigViewSchema, tenantConfigJson } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

export const showTenantConfig = defineOperation({
  name: 'tenantConfig.show',
  summary: "A tenant's configuration: its plan, its overrides and the effective result",
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
  output: TenantConfigViewSchema,
  http: [{ method: 'GET', path: '/admin/tenants/:idOrSlug/config', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant }, { engine }) => tenantConfigJson(await engine.editor.configOf(tenant)),
});

export const changeTenantConfig = defineOperation({
  name: 'tenantConfig.change',
  summary:
    'Set or unset configuration values by path (plan, features, limits.<name>, branding.<name>, settings.<key>...)',
  access: { operator: true },
  input: Type.Object(
    {
      tenant: TenantRef,
      set: Type.Optional(
        Type.Record(Type.String({ maxLength: 300 }), Type.Unknown(), { maxProperties: 100 }),
      ),
      unset: Type.Optional(Type.Array(Type.String({ maxLength: 300 }), { maxItems: 100 })),
    },
    { additionalProperties: false },
  ),
  output: TenantConfigViewSchema,
  audit: ['tenant.config'],
  http: [{ method: 'PATCH', path: '/admin/tenants/:idOrSlug/config', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant, ...change }, { engine, context }) =>
    tenantConfigJson(await engine.editor.changeConfig(tenant, change, context)),
});
