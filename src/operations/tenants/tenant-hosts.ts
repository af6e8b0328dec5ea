import Type from 'typebox';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

const Host = Type.String({ minLength: 1, maxLength: 254 });

export const addHost = defineOperation({
  name: 'hosts.add',
  summary: 'Add a host to a tenant',
  access: { operator: true },
  input: Type.Object(
    { tenant: TenantRef, host: Type.String({ maxLength: 254 }) },
    { additionalProperties: false },
  ),
  output: TenantViewSchema,
  audit: ['tenant.host.add'],
  http: [{ method: 'POST', path: '/admin/tenants/:idOrSlug/hosts', scope: 'admin', params: BY_TENANT }],
  run: async ({ tenant, host }, { engine, context }) =>
    tenantView(await engine.editor.addHost(tenant, { host }, context)),
});

export const removeHost = defineOperation({
  name: 'hosts.remove',
  summary: 'Remove a host from a tenant',
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef, host: Host }, { additionalProperties: false }),
  output: TenantViewSchema,
  audit: ['tenant.host.remove'],
  http: [
    {
      method: 'DELETE',
      path: '/admin/tenants/:idOrSlug/hosts/:host',
      scope: 'admin',
      params: { idOrSlug: 'tenant', host: 'host' },
    },
  ],
  run: async ({ tenant, host }, { engine, context }) =>
    tenantView(await engine.editor.removeHost(tenant, host, context)),
});
