import Type, { type Static } from 'typebox';
import type { ClientView as ClientInfo, ClientInventory, IssuedClient } from './client-registry.js';

const Short = (max: number) => Type.String({ minLength: 1, maxLength: max });
const DateTime = Type.String({ format: 'date-time' });
const NullableDateTime = Type.Union([DateTime, Type.Null()]);

/**
 * What a machine says about itself when it connects or heartbeats: bounded, so a client cannot
 * store megabytes per heartbeat. The same shape is what listings show back.
 */
export const ClientInventorySchema = Type.Object(
  {
    name: Type.Optional(Short(200)),
    hostname: Type.Optional(Short(253)),
    os: Type.Optional(Short(100)),
    osVersion: Type.Optional(Short(100)),
    architecture: Type.Optional(Short(50)),
    ipv4: Type.Optional(Type.Array(Type.String({ format: 'ipv4' }), { maxItems: 64 })),
    ipv6: Type.Optional(Type.Array(Type.String({ format: 'ipv6' }), { maxItems: 64 })),
    tags: Type.Optional(Type.Array(Short(100), { maxItems: 100 })),
    version: Type.Optional(Short(100)),
  },
  { additionalProperties: false },
);
export type ClientInventoryJson = Static<typeof ClientInventorySchema>;

/** A client as its tenant sees it (and as it is issued): never its secret or its hash. */
export const ClientViewSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  clientId: Type.String(),
  name: Type.String(),
  tenantId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()], {
    description: 'Null for an orphaned client (its tenant deleted, or none given)',
  }),
  orphaned: Type.Boolean(),
  state: Type.Union([Type.Literal('connected'), Type.Literal('disconnected'), Type.Literal('never')]),
  inventory: ClientInventorySchema,
  connectedAt: NullableDateTime,
  lastSeenAt: NullableDateTime,
  lastAddress: Type.Union([Type.String(), Type.Null()]),
  createdAt: DateTime,
  revokedAt: NullableDateTime,
});
/** The JSON of a client (the registry's `ClientView` carries dates). */
export type ClientViewJson = Static<typeof ClientViewSchema>;

/** A client in the operators' listing of every tenant's clients: with its tenant's slug. */
export const ClientWithTenantSchema = Type.Object({
  ...ClientViewSchema.properties,
  tenantSlug: Type.Union([Type.String(), Type.Null()], { description: 'Null for an orphaned client' }),
});
export type ClientWithTenantJson = Static<typeof ClientWithTenantSchema>;

const iso = (date: Date | null) => (date === null ? null : date.toISOString());

function inventoryView(inventory: ClientInventory): ClientInventoryJson {
  const { ipv4, ipv6, tags, ...text } = inventory;
  return {
    ...text,
    ...(ipv4 === undefined ? {} : { ipv4: [...ipv4] }),
    ...(ipv6 === undefined ? {} : { ipv6: [...ipv6] }),
    ...(tags === undefined ? {} : { tags: [...tags] }),
  };
}

export function clientView(client: ClientInfo): ClientViewJson {
  return {
    id: client.id,
    clientId: client.clientId,
    name: client.name,
    tenantId: client.tenantId,
    orphaned: client.orphaned,
    state: client.state,
    inventory: inventoryView(client.inventory),
    connectedAt: iso(client.connectedAt),
    lastSeenAt: iso(client.lastSeenAt),
    lastAddress: client.lastAddress,
    createdAt: client.createdAt.toISOString(),
    revokedAt: iso(client.revokedAt),
  };
}

export function clientWithTenantView(client: ClientInfo): ClientWithTenantJson {
  return { ...clientView(client), tenantSlug: client.tenantSlug ?? null };
}

/** New client credentials: the secret is in this answer only. */
export const IssuedClientSchema = Type.Object({
  client: ClientViewSchema,
  clientId: Type.String(),
  clientSecret: Type.String({ description: 'The client secret. Shown only in this response.' }),
  warning: Type.String(),
});
export type IssuedClientJson = Static<typeof IssuedClientSchema>;

export function issuedClientView(issued: IssuedClient): IssuedClientJson {
  return {
    client: clientView(issued.client),
    clientId: issued.clientId,
    clientSecret: issued.clientSecret,
    warning: issued.warning,
  };
}
