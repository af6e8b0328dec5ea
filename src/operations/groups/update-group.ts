import Type from 'typebox';
import { GroupViewSchema, groupView } from '../../auth/group-view.js';
import { defineOperation } from '../operation.js';
import { GroupFields, GroupRef, InTenant } from './group-input.js';

/** Added roles and new members need what the group grants; the tenant's last admin is never taken away. */
export const updateGroup = defineOperation({
  name: 'groups.update',
  summary: 'Change a group: name, roles, members',
  access: { operator: true, tenant: 'groups:manage' },
  input: Type.Object({ ...InTenant, group: GroupRef, ...GroupFields }, { additionalProperties: false }),
  output: GroupViewSchema,
  audit: ['group.update'],
  http: [{ method: 'PATCH', path: '/api/v1/groups/:id', scope: 'tenant', params: { id: 'group' } }],
  async run({ tenant, group, ...change }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return groupView(await call.engine.identity.groups.update(principal, group, change));
  },
});
