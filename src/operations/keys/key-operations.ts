import Type from 'typebox';
import {
  ApiKeyViewSchema,
  apiKeyView,
  CreatedKeySchema,
  createdKeyView,
  IssuedKeySchema,
  issuedKeyView,
} from '../../auth/api-key-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, Flag, TenantRef } from '../refs.js';

const KeyList = Type.Object({ keys: Type.Array(ApiKeyViewSchema) });
/** Operators name the tenant; a tenant actor's is its own. */
const InTenant = { tenant: Type.Optional(TenantRef) };

export const listKeys = defineOperation({
  name: 'keys.list',
  summary: 'The tenant’s API keys, never their secrets',
  access: { operator: true, tenant: 'keys:manage' },
  input: Type.Object({ ...InTenant, includeRevoked: Type.Optional(Flag) }, { additionalProperties: false }),
  output: KeyList,
  http: [
    {
      method: 'GET',
      path: '/admin/tenants/:idOrSlug/keys',
      scope: 'admin',
      params: BY_TENANT,
      query: ['includeRevoked'],
    },
    {
      method: 'GET',
      path: '/api/v1/keys',
      scope: 'tenant',
      respond: {
        schema: Type.Object({ items: Type.Array(ApiKeyViewSchema) }),
        from: (output: { keys: unknown[] }) => ({ items: output.keys }),
      },
    },
  ],
  async run({ tenant, includeRevoked }, call) {
    const found = await call.tenant(tenant);
    const keys = await call.engine.keys.list(found.id, { includeRevoked });
    return { keys: keys.map(apiKeyView) };
  },
});

export const createKey = defineOperation({
  name: 'keys.create',
  summary:
    'Issue a further API key (shown once), keeping the others; it holds at most what its maker holds; refused at limits.maxApiKeys live keys',
  access: { operator: true, tenant: 'keys:manage' },
  input: Type.Object(
    {
      ...InTenant,
      name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
      expiresAt: Type.Optional(
        Type.String({
          minLength: 1,
          maxLength: 40,
          description:
            'ISO 8601 date-time with an offset (or a date: midnight UTC) after which it stops working',
        }),
      ),
      permissions: Type.Optional(
        Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 1000 }),
      ),
    },
    { additionalProperties: false },
  ),
  output: CreatedKeySchema,
  audit: ['tenant.key.create'],
  http: [
    {
      method: 'POST',
      path: '/admin/tenants/:idOrSlug/api-keys',
      scope: 'admin',
      params: BY_TENANT,
      status: 201,
    },
    { method: 'POST', path: '/api/v1/keys', scope: 'tenant', status: 201 },
  ],
  async run({ tenant, ...request }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return createdKeyView(await call.engine.keys.create(principal, request));
  },
});

export const revokeKey = defineOperation({
  name: 'keys.revoke',
  summary: 'Revoke one API key: it stops authenticating at once, in every server process',
  access: { operator: true, tenant: 'keys:manage' },
  input: Type.Object(
    { ...InTenant, keyId: Type.String({ minLength: 1, maxLength: 100 }) },
    { additionalProperties: false },
  ),
  output: ApiKeyViewSchema,
  audit: ['tenant.key.revoke'],
  http: [
    {
      method: 'DELETE',
      path: '/admin/tenants/:idOrSlug/api-keys/:keyId',
      scope: 'admin',
      params: { idOrSlug: 'tenant', keyId: 'keyId' },
    },
    { method: 'DELETE', path: '/api/v1/keys/:id', scope: 'tenant', params: { id: 'keyId' } },
  ],
  async run({ tenant, keyId }, call) {
    const principal = call.principal(await call.tenant(tenant));
    return apiKeyView(await call.engine.keys.revoke(principal, keyId));
  },
});

export const regenerateKey = defineOperation({
  name: 'keys.regenerate',
  summary: 'Revoke every key of the tenant and issue a new one (shown once)',
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
  output: IssuedKeySchema,
  audit: ['tenant.key.regenerate'],
  http: [
    {
      method: 'POST',
      path: '/admin/tenants/:idOrSlug/regenerate-api-key',
      scope: 'admin',
      params: BY_TENANT,
    },
  ],
  run: async ({ tenant }, call) =>
    issuedKeyView(await call.engine.keys.regenerate(await call.tenant(tenant), call.context)),
});
