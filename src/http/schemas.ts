import Type from 'typebox';
import { TenantConfigSchema } from '../tenants/tenant.js';

const Status = Type.Union([
  Type.Literal('provisioning'),
  Type.Literal('active'),
  Type.Literal('inactive'),
  Type.Literal('deleted'),
]);
const Isolation = Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]);

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.String(),
    field: Type.Optional(Type.String()),
    requestId: Type.Optional(Type.String()),
  },
  { $id: 'Problem' },
);

/** What tenant actors see of their tenant (`/tenant-info`): no limits or private settings. */
export const PublicTenantSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  slug: Type.String(),
  status: Status,
  isolation: Isolation,
  hosts: Type.Array(Type.String()),
  config: Type.Object({
    features: Type.Optional(Type.Array(Type.String())),
    branding: Type.Optional(
      Type.Object({
        displayName: Type.Optional(Type.String()),
        primaryColor: Type.Optional(Type.String()),
        secondaryColor: Type.Optional(Type.String()),
        logoUrl: Type.Optional(Type.String()),
      }),
    ),
  }),
});

/** What operators see of a tenant. */
export const AdminTenantSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  slug: Type.String(),
  status: Status,
  isolation: Isolation,
  hosts: Type.Array(Type.String()),
  config: TenantConfigSchema,
  schemaVersion: Type.Union([Type.Integer(), Type.Null()], {
    description: 'Entity-schema version of its tables (null while provisioning)',
  }),
  server: Type.Union([Type.String(), Type.Null()], { description: 'Database server of a database tenant' }),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
});

export const IssuedKeySchema = Type.Object({
  keyId: Type.String(),
  key: Type.String({ description: 'The whole API key. Shown only in this response.' }),
  warning: Type.String(),
});

export const ApiKeyInfoSchema = Type.Object({
  id: Type.String(),
  keyId: Type.String(),
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  lastUsedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  revokedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});

export const AuditEntrySchema = Type.Object({
  id: Type.String(),
  at: Type.String({ format: 'date-time' }),
  actor: Type.String(),
  action: Type.String(),
  tenantId: Type.Union([Type.String(), Type.Null()]),
  target: Type.Union([Type.String(), Type.Null()]),
  outcome: Type.String(),
  clientAddress: Type.Union([Type.String(), Type.Null()]),
  details: Type.Record(Type.String(), Type.Unknown()),
});

export const IdOrSlugParams = Type.Object(
  { idOrSlug: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);

export const BooleanQuery = Type.Union([Type.Literal('true'), Type.Literal('false')]);

export const problemResponses = {
  400: ProblemSchema,
  401: ProblemSchema,
  403: ProblemSchema,
  404: ProblemSchema,
  409: ProblemSchema,
} as const;
