import Type from 'typebox';
import { ReplaceTenantInputSchema, UpdateTenantInputSchema } from '../../tenants/tenant-input.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

export const updateTenant = defineOperation({
  name: 'tenants.update',
  summary: 'Change some of name, slug, hosts and config',
  access: { operator: true },
  input: Type.Object(
    { tenant: TenantRef, ...UpdateTenantInputSchema.properties },
    { additionalProperties: false },
  ),
  output: TenantViewSchema,
  audit: ['tenant.update'],
  http: [{ method: 'PATCH', path: '/admin/tenants/:idOrSlug', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant, ...change }, { engine, context }) =>
    tenantView(await engine.editor.update(tenant, change, context)),
});

export const replaceTenant = defineOperation({
  name: 'tenants.replace',
  summary: 'Replace name, slug, hosts and config',
  access: { operator: true },
  input: Type.Object(
    { tenant: TenantRef, ...ReplaceTenantInputSchema.properties },
    { additionalProperties: false },
  ),
  output: TenantViewSchema,
  audit: ['tenant.replace'],
  http: [{ method: 'PUT', path: '/admin/tenants/:idOrSlug', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant, ...replacement }, { engine, context }) =>
    tenantView(await engine.editor.replace(tenant, replacement, context)),
});
