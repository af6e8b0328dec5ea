import Type from 'typebox';
import { GroupViewSchema, groupView } from '../../auth/group-view.js';
import { defineOperation } from '../operation.js';
import { GroupRef, InTenant } from './group-input.js';

export const showGroup = defineOperation({
  name: 'groups.show',
  summary: 'One group (groups:manage)',
  access: { operator: true, tenant: 'groups:manage' },
  input: Type.Object({ ...InTenant, group: GroupRef }, { additionalProperties: false }),
  output: GroupViewSchema,
  http: [{ method: 'GET', path: '/api/v1/groups/:id', scope: 'tenant', params: { id: 'group' } }],
  async run({ tenant, group }, call) {
    const found = await call.tenant(tenant);
    return groupView(await call.engine.identity.groups.get(found.id, group));
  },
});
