import Type, { type Static } from 'typebox';
import { TenantConfigSchema } from './tenant.js';

const Name = Type.String({ minLength: 1, maxLength: 200 });
const Slug = Type.String({ maxLength: 63 });
const Host = Type.String({ maxLength: 254 });
const Isolation = Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]);
const Hosts = Type.Array(Host, { maxItems: 100 });

/** Structure of a tenant creation; slugs and hosts get their semantic checks in the registry. */
export const CreateTenantInputSchema = Type.Object(
  {
    name: Name,
    slug: Slug,
    hosts: Type.Optional(Hosts),
    isolation: Type.Optional(Isolation),
    /** Its plan (from `plans` in the config file); the same as `config.plan`. */
    plan: Type.Optional(Type.String({ maxLength: 40 })),
    /** The database server of a `database` tenant (default: the one with the fewest tenants). */
    server: Type.Optional(Type.String({ maxLength: 40 })),
    config: Type.Optional(TenantConfigSchema),
  },
  { additionalProperties: false },
);
export type CreateTenantInput = Static<typeof CreateTenantInputSchema>;

/** PATCH: any subset. `config` replaces the whole config object. */
export const UpdateTenantInputSchema = Type.Object(
  {
    name: Type.Optional(Name),
    slug: Type.Optional(Slug),
    hosts: Type.Optional(Hosts),
    config: Type.Optional(TenantConfigSchema),
    isolation: Type.Optional(Isolation),
  },
  { additionalProperties: false },
);
export type UpdateTenantInput = Static<typeof UpdateTenantInputSchema>;

/** PUT: the whole mutable representation. */
export const ReplaceTenantInputSchema = Type.Object(
  {
    name: Name,
    slug: Slug,
    hosts: Hosts,
    config: TenantConfigSchema,
    isolation: Type.Optional(Isolation),
  },
  { additionalProperties: false },
);
export type ReplaceTenantInput = Static<typeof ReplaceTenantInputSchema>;

export const HostInputSchema = Type.Object({ host: Host }, { additionalProperties: false });
