import Type from 'typebox';
import { MAX_TENANT_PAGE } from '../../tenants/tenant-store.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { Flag } from '../refs.js';

export const listTenants = defineOperation({
  name: 'tenants.list',
  summary: 'List tenants (active only unless asked), a page at a time by their id',
  access: { operator: true },
  input: Type.Object(
    {
      includeInactive: Type.Optional(Flag),
      includeDeleted: Type.Optional(Flag),
      limit: Type.Optional(
        Type.Integer({ minimum: 1, maximum: MAX_TENANT_PAGE, description: 'Default 100' }),
      ),
      after: Type.Optional(
        Type.String({ maxLength: 36, description: 'The `next` cursor of the previous page' }),
      ),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({
    tenants: Type.Array(TenantViewSchema),
    next: Type.Union([Type.String(), Type.Null()]),
  }),
  http: [
    {
      method: 'GET',
      path: '/admin/tenants',
      scope: 'admin',
      query: ['includeInactive', 'includeDeleted', 'limit', 'after'],
    },
  ],
  async run(input, { engine }) {
    const page = await engine.store.list(input);
    return { tenants: page.tenants.map(tenantView), next: page.next };
  },
});
