import Type from 'typebox';
import { GroupViewSchema, groupView } from '../../auth/group-view.js';
import { defineOperation } from '../operation.js';
import { InTenant } from './group-input.js';

export const listGroups = defineOperation({
  name: 'groups.list',
  summary: 'List the groups of this tenant (groups:manage)',
  access: { operator: true, tenant: 'groups:manage' },
  input: Type.Object({ ...InTenant }, { additionalProperties: false }),
  output: Type.Object({ groups: Type.Array(GroupViewSchema) }),
  http: [
    {
      method: 'GET',
      path: '/api/v1/groups',
      scope: 'tenant',
      respond: {
        schema: Type.Object({ items: Type.Array(GroupViewSchema) }),
        from: (output: { groups: unknown[] }) => ({ items: output.groups }),
      },
    },
  ],
  async run({ tenant }, call) {
    const found = await call.tenant(tenant);
    const groups = await call.engine.identity.groups.list(found.id);
    return { groups: groups.map(groupView) };
  },
});
