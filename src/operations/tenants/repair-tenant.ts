import Type from 'typebox';
import { IssuedKeySchema, issuedKeyView } from '../../auth/api-key-view.js';
import { repairTenant as repair } from '../../lifecycle/tenant-repair.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

export const repairTenant = defineOperation({
  name: 'tenants.repair',
  summary:
    'Finish a tenant a crash left half done (provisioning, purge; an unfinished restore is removed), or check its tables against its entity version',
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
  output: Type.Object({
    tenant: TenantViewSchema,
    action: Type.Union([
      Type.Literal('provisioned'),
      Type.Literal('purged'),
      Type.Literal('removed'),
      Type.Literal('checked'),
      Type.Literal('none'),
    ]),
    detail: Type.String(),
    apiKey: Type.Optional(IssuedKeySchema),
    differences: Type.Optional(Type.Array(Type.String())),
  }),
  audit: ['tenant.repair', 'tenant.purge'],
  http: [{ method: 'POST', path: '/admin/tenants/:idOrSlug/repair', scope: 'admin', params: BY_TENANT }],
  async run({ tenant }, { engine, context }) {
    const report = await repair(engine.lifecycle, tenant, context);
    return {
      tenant: tenantView(report.tenant),
      action: report.action,
      detail: report.detail,
      ...(report.apiKey ? { apiKey: issuedKeyView(report.apiKey) } : {}),
      ...(report.differences ? { differences: [...report.differences] } : {}),
    };
  },
});
