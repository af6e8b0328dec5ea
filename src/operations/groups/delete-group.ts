import Type from 'typebox';
import { defineOperation } from '../operation.js';
import { GroupRef, InTenant } from './group-input.js';

/** The root group is not deleted (`conflict`), nor one whose loss would leave the tenant no admin. */
export const deleteGroup = defineOperation({
  name: 'groups.delete',
  summary: 'Delete a group',
  access: { operator: true, tenant: 'groups:manage' },
  input: Type.Object({ ...InTenant, group: GroupRef }, { additionalProperties: false }),
  output: Type.Null(),
  audit: ['group.delete'],
  http: [
    { method: 'DELETE', path: '/api/v1/groups/:id', scope: 'tenant', params: { id: 'group' }, status: 204 },
  ],
  async run({ tenant, group }, call) {
    const principal = call.principal(await call.tenant(tenant));
    await call.engine.identity.groups.delete(principal, group);
    return null;
  },
});
