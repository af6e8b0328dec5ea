import Type, { type Static } from 'typebox';
import { ConfigError } from '../errors.js';
import { normalizeHost } from '../tenants/host.js';
import { checkSlug } from '../tenants/slug.js';
import {
  CONFIG_SECTIONS,
  effectiveConfig,
  type IsolationLevel,
  type ManagedField,
  type Plans,
  type TenantConfig,
  TenantConfigSchema,
} from '../tenants/tenant.js';
import { settingsProblem } from '../tenants/tenant-settings.js';

/** A tenant declared in the config file (`tenants:`), as the operator writes it. */
export const StaticTenantSchema = Type.Object(
  {
    slug: Type.String({ maxLength: 63 }),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    /** Only at creation: an existing tenant changes isolation by a move, never by a sync. */
    isolation: Type.Optional(
      Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]),
    ),
    hosts: Type.Optional(Type.Array(Type.String({ maxLength: 254 }), { maxItems: 100 })),
    ...TenantConfigSchema.properties,
  },
  { additionalProperties: false },
);

export type StaticTenantEntry = Static<typeof StaticTenantSchema>;

/** A declared tenant after validation: what the sync makes true in the database. */
export interface StaticTenant {
  readonly slug: string;
  readonly name: string;
  /** The isolation a new tenant is created with (default: `tenancy.defaultIsolation`). */
  readonly isolation: IsolationLevel | undefined;
  /** Normalised; undefined when the entry leaves hosts to the admin API. */
  readonly hosts: readonly string[] | undefined;
  /** The config sections the entry declares (a section it leaves out is not in here). */
  readonly config: Readonly<TenantConfig>;
  /** What the file owns: the admin API may not change these while the file declares them. */
  readonly fields: readonly ManagedField[];
}

export interface StaticTenantRules {
  readonly plans: Plans;
  readonly defaultPlan: string | undefined;
  readonly reservedSlugs: readonly string[];
  readonly baseDomain: string;
  readonly settingsSchema: Readonly<Record<string, unknown>> | undefined;
  /** The embedded database cannot hold database tenants. */
  readonly embedded: boolean;
}

/**
 * Checks the `tenants:` of a config file with the registry's rules (slugs, hosts, plans,
 * settings) and that slugs and hosts are unique within the file. Throws a ConfigError naming
 * the key (`tenants.2.slug`). Undefined stays undefined: a file without `tenants:` manages none.
 */
export function normaliseStaticTenants(
  entries: readonly StaticTenantEntry[] | undefined,
  rules: StaticTenantRules,
): readonly StaticTenant[] | undefined {
  if (entries === undefined) return undefined;
  const slugs = new Map<string, number>();
  const hostOwners = new Map<string, { index: number; position: number }>();
  const tenants = entries.map((entry, index): StaticTenant => {
    const key = `tenants.${index}`;
    const slug = checkSlug(entry.slug, rules.reservedSlugs);
    if (!slug.ok) throw new ConfigError(`${key}.slug`, slug.message);
    const earlier = slugs.get(slug.slug);
    if (earlier !== undefined)
      throw new ConfigError(`${key}.slug`, `"${slug.slug}" is declared twice (also tenants.${earlier})`);
    slugs.set(slug.slug, index);

    const name = entry.name.trim();
    if (name.length === 0) throw new ConfigError(`${key}.name`, 'must not be blank');
    // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
    if (/[\u0000-\u001f\u007f]/.test(name))
      throw new ConfigError(`${key}.name`, 'must not contain control characters');

    if (entry.isolation === 'database' && rules.embedded) {
      throw new ConfigError(`${key}.isolation`, 'database isolation needs PostgreSQL (DATABASE_URL)');
    }

    let hosts: string[] | undefined;
    if (entry.hosts !== undefined) {
      hosts = [];
      for (const [position, raw] of entry.hosts.entries()) {
        const checked = normalizeHost(raw);
        const hostKey = `${key}.hosts.${position}`;
        if (!checked.ok) throw new ConfigError(hostKey, checked.message);
        if (checked.host === rules.baseDomain)
          throw new ConfigError(hostKey, `${checked.host} is the base domain itself`);
        const owner = hostOwners.get(checked.host);
        if (owner !== undefined && owner.index !== index)
          throw new ConfigError(hostKey, `${checked.host} is also declared by tenants.${owner.index}`);
        if (owner === undefined) hostOwners.set(checked.host, { index, position });
        if (!hosts.includes(checked.host)) hosts.push(checked.host);
      }
    }

    if (entry.plan !== undefined && !Object.hasOwn(rules.plans, entry.plan)) {
      const known = Object.keys(rules.plans);
      throw new ConfigError(
        `${key}.plan`,
        `names no plan in plans (${entry.plan})${known.length > 0 ? `; plans: ${known.join(', ')}` : ''}`,
      );
    }
    const config: TenantConfig = {};
    const fields: ManagedField[] = ['slug', 'name'];
    if (hosts !== undefined) fields.push('hosts');
    for (const section of CONFIG_SECTIONS) {
      if (entry[section] === undefined) continue;
      (config as Record<string, unknown>)[section] = structuredClone(entry[section]);
      fields.push(section);
    }
    if (config.settings !== undefined) {
      const plan = config.plan ?? rules.defaultPlan;
      const problem = settingsProblem(
        rules.settingsSchema,
        effectiveConfig({ ...config, ...(plan ? { plan } : {}) }, rules.plans).settings,
      );
      if (problem) throw new ConfigError(`${key}.${problem.field}`, problem.message);
    }
    return {
      slug: slug.slug,
      name,
      isolation: entry.isolation,
      hosts,
      config,
      fields,
    };
  });

  // `<slug>.<baseDomain>` belongs to the tenant with that slug: no other tenant may claim it.
  const suffix = `.${rules.baseDomain}`;
  for (const [host, { index, position }] of hostOwners) {
    if (!host.endsWith(suffix)) continue;
    const owner = slugs.get(host.slice(0, -suffix.length));
    if (owner !== undefined && owner !== index) {
      throw new ConfigError(
        `tenants.${index}.hosts.${position}`,
        `${host} names the slug of tenants.${owner}`,
      );
    }
  }
  return tenants;
}
