import Type from 'typebox';
import { defineOperation } from '../operation.js';
import { TenantRef } from '../refs.js';

export const revokeClient = defineOperation({
  name: 'clients.revoke',
  summary: 'Revoke a client: it can no longer connect, and its connection token stops working',
  access: { operator: true, tenant: 'clients:manage' },
  input: Type.Object(
    {
      tenant: Type.Optional(TenantRef),
      id: Type.String({
        minLength: 1,
        maxLength: 100,
        description: 'The client’s id (a uuid), not its clientId',
      }),
    },
    { additionalProperties: false },
  ),
  // What the CLI prints; HTTP answers 204 without it.
  output: Type.Object({ revoked: Type.String() }),
  audit: ['client.revoke'],
  http: [
    {
      method: 'DELETE',
      path: '/api/v1/clients/:id',
      scope: 'tenant',
      params: { id: 'id' },
      status: 204,
    },
  ],
  async run({ tenant, id }, call) {
    const principal = call.principal(await call.tenant(tenant));
    await call.engine.identity.clients.revoke(principal, id);
    return { revoked: id };
  },
});
