import Type from 'typebox';
import { setTenantStatus } from '../../lifecycle/tenant-status.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation, type OperationCall } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

const input = Type.Object({ tenant: TenantRef }, { additionalProperties: false });

const setStatus = async (tenant: string, status: 'active' | 'inactive', { engine, context }: OperationCall) =>
  tenantView(await setTenantStatus(engine.lifecycle, tenant, status, context));

export const activateTenant = defineOperation({
  name: 'tenants.activate',
  summary: 'Activate a tenant',
  access: { operator: true },
  input,
  output: TenantViewSchema,
  audit: ['tenant.activate'],
  http: [{ method: 'POST', path: '/admin/tenants/:idOrSlug/activate', scope: 'admin', params: BY_TENANT }],
  run: ({ tenant }, call) => setStatus(tenant, 'active', call),
});

export const deactivateTenant = defineOperation({
  name: 'tenants.deactivate',
  summary: 'Deactivate a tenant: it stops resolving at once and its users’ sessions end',
  access: { operator: true },
  input,
  output: TenantViewSchema,
  audit: ['tenant.deactivate'],
  http: [{ method: 'POST', path: '/admin/tenants/:idOrSlug/deactivate', scope: 'admin', params: BY_TENANT }],
  run: ({ tenant }, call) => setStatus(tenant, 'inactive', call),
});
