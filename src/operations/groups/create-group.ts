import Type from 'typebox';
import { GroupViewSchema, groupView } from '../../auth/group-view.js';
import { defineOperation } from '../operation.js';
import { InTenant, NewGroupFields } from './group-input.js';

/** A group's roles reach all its members: giving it roles, or members, needs what those roles grant. */
export const createGroup = defineOperation({
  name: 'groups.create',
  summary: 'Create a group',
  access: { operator: true, tenant: 'groups:manage' },
  input: Type.Object({ ...InTenant, ...NewGroupFields }, { additionalProperties: false }),
  output: GroupViewSchema,
  audit: ['group.create'],
  http: [{ method: 'POST', path: '/api/v1/groups', scope: 'tenant', status: 201 }],
  async run({ tenant, ...group }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return groupView(await call.engine.identity.groups.create(principal, group));
  },
});
