import Type from 'typebox';
import { IssuedClientSchema, issuedClientView } from '../../auth/client-view.js';
import { defineOperation } from '../operation.js';
import { TenantRef } from '../refs.js';

export const createClient = defineOperation({
  name: 'clients.create',
  summary:
    'New client credentials (the secret is shown once); an operator who names no tenant makes an orphaned client, until it is given one',
  access: { operator: true, tenant: 'clients:manage' },
  input: Type.Object(
    { tenant: Type.Optional(TenantRef), name: Type.String({ minLength: 1, maxLength: 200 }) },
    { additionalProperties: false },
  ),
  output: IssuedClientSchema,
  audit: ['client.create'],
  http: [
    { method: 'POST', path: '/api/v1/clients', scope: 'tenant', status: 201 },
    { method: 'POST', path: '/admin/clients', scope: 'admin', status: 201 },
  ],
  async run({ tenant, name }, call) {
    const clients = call.engine.identity.clients;
    if (tenant === undefined && call.operator) {
      return issuedClientView(await clients.createForOperator(null, { name }, call.context));
    }
    const principal = call.principal(await call.tenant(tenant));
    return issuedClientView(await clients.create(principal, { name }));
  },
});
