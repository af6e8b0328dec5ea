import Type from 'typebox';
import {
  ClientViewSchema,
  ClientWithTenantSchema,
  clientView,
  clientWithTenantView,
} from '../../auth/client-view.js';
import { defineOperation } from '../operation.js';
import { Flag, TenantRef } from '../refs.js';

export const listClients = defineOperation({
  name: 'clients.list',
  summary: 'The tenant’s clients that are not revoked, never their secrets',
  access: { operator: true, tenant: 'clients:read' },
  // Operators name the tenant; a tenant actor's is its own.
  input: Type.Object({ tenant: Type.Optional(TenantRef) }, { additionalProperties: false }),
  output: Type.Object({ items: Type.Array(ClientViewSchema) }),
  http: [{ method: 'GET', path: '/api/v1/clients', scope: 'tenant', summary: 'This tenant’s clients' }],
  async run({ tenant }, call) {
    const found = await call.tenant(tenant);
    const clients = await call.engine.identity.clients.list(found.id);
    return { items: clients.map(clientView) };
  },
});

export const listAllClients = defineOperation({
  name: 'clients.listAll',
  summary:
    'Every client with its tenant (revoked ones too), or only the orphaned ones: no tenant, or a deleted one',
  access: { operator: true },
  input: Type.Object({ orphaned: Type.Optional(Flag) }, { additionalProperties: false }),
  output: Type.Object({ items: Type.Array(ClientWithTenantSchema) }),
  http: [
    {
      method: 'GET',
      path: '/admin/clients',
      scope: 'admin',
      query: ['orphaned'],
      summary: 'Every client with its tenant; ?orphaned=true for those without one',
    },
  ],
  async run({ orphaned }, { engine }) {
    const clients = await engine.identity.clients.listAll({ orphaned: orphaned === true });
    return { items: clients.map(clientWithTenantView) };
  },
});
