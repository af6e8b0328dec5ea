import Type from 'typebox';
import { defineOperation } from '../operation.js';
import { InTenant, RoleRef } from './role-input.js';

/** Built-in roles and the default role are not deleted (`conflict`). */
export const deleteRole = defineOperation({
  name: 'roles.delete',
  summary: 'Delete a role',
  access: { operator: true, tenant: 'roles:manage' },
  input: Type.Object({ ...InTenant, role: RoleRef }, { additionalProperties: false }),
  output: Type.Null(),
  audit: ['role.delete'],
  http: [
    { method: 'DELETE', path: '/api/v1/roles/:id', scope: 'tenant', params: { id: 'role' }, status: 204 },
  ],
  async run({ tenant, role }, call) {
    const principal = call.principal(await call.tenant(tenant));
    await call.engine.identity.roles.delete(principal, role);
    return null;
  },
});
