import { isDeepStrictEqual } from 'node:util';
import type { IssuedApiKey } from '../auth/api-key-store.js';
import type { TenantryConfig } from '../config/config-schema.js';
import type { StaticTenant } from '../config/static-tenants.js';
import type { ConnectionPool, Queryable } from '../db/database.js';
import { ConfigError, isTenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import { auditedChange } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { EngineLogger } from '../runtime/engine-logger.js';
import { CONFIG_FILE_CONTEXT } from '../tenants/managed-tenants.js';
import {
  CONFIG_SECTIONS,
  isBeingBuilt,
  type ManagedField,
  TENANT_COLUMNS,
  type Tenant,
  type TenantConfig,
  type TenantRow,
  tenantFromRow,
} from '../tenants/tenant.js';
import type { CreateTenantInput, UpdateTenantInput } from '../tenants/tenant-input.js';

/** What a sync did. API keys of created tenants are here once and must never be logged. */
export interface StaticSyncReport {
  readonly created: readonly { readonly slug: string; readonly id: string; readonly apiKey: IssuedApiKey }[];
  readonly updated: readonly { readonly slug: string; readonly fields: readonly string[] }[];
  readonly activated: readonly string[];
  readonly deactivated: readonly string[];
  /** Declared tenants the sync left alone (still being provisioned): `tenantry tenants repair`. */
  readonly skipped: readonly string[];
}

interface KnownTenant {
  readonly tenant: Tenant;
  readonly managedBy: string | null;
  readonly managedFields: readonly string[];
  /** Deactivated by the sync because the file stopped declaring it. */
  readonly released: boolean;
}

/** The database state a sync starts from, read and checked before anything is written. */
export interface StaticSyncPlan {
  readonly declared: readonly StaticTenant[] | undefined;
  readonly known: ReadonlyMap<string, KnownTenant>;
}

const NO_SYNC: StaticSyncReport = Object.freeze({
  created: [],
  updated: [],
  activated: [],
  deactivated: [],
  skipped: [],
});

/**
 * Reads what the sync will work on and refuses, before anything is written, a config the
 * database contradicts: a plan removed while tenants outside the file still use it, a declared
 * host or slug that belongs to a tenant the file does not declare. Throws ConfigError.
 */
export async function planStaticSync(db: Queryable, config: TenantryConfig): Promise<StaticSyncPlan> {
  const declared = config.tenants;
  const slugs = (declared ?? []).map((entry) => entry.slug);
  const planned = (declared ?? [])
    .filter((entry) => entry.fields.includes('plan'))
    .map((entry) => entry.slug);
  const orphans = await db.query<{ plan: string; n: number; slugs: string[] }>(
    `SELECT t.config->>'plan' AS plan, count(*)::int AS n, (array_agg(t.slug ORDER BY t.slug))[1:3] AS slugs
       FROM tenantry.tenants t
      WHERE t.status <> 'deleted' AND t.config->>'plan' IS NOT NULL
        AND NOT (t.config->>'plan' = ANY($1::text[])) AND NOT (t.slug = ANY($2::text[]))
      GROUP BY 1 ORDER BY 1`,
    [Object.keys(config.plans), planned],
  );
  const orphan = orphans.rows[0];
  if (orphan) {
    const more = orphan.n > orphan.slugs.length ? ', ...' : '';
    throw new ConfigError(
      'plans',
      `plan "${orphan.plan}" is still the plan of ${orphan.n} tenant(s) (${orphan.slugs.join(', ')}${more}): ` +
        'move them to another plan first, or keep the plan',
    );
  }
  if (declared === undefined) return { declared, known: new Map() };

  const { rows } = await db.query<
    TenantRow & { managed_by: string | null; managed_fields: string[] | null; released: boolean }
  >(
    `SELECT ${TENANT_COLUMNS}, t.managed_by, t.managed_fields, t.config_released_at IS NOT NULL AS released
       FROM tenantry.tenants t
      WHERE t.status <> 'deleted' AND (t.slug = ANY($1::text[]) OR t.managed_by IS NOT NULL)`,
    [slugs],
  );
  const known = new Map<string, KnownTenant>(
    rows.map((row) => [
      row.slug,
      {
        tenant: tenantFromRow(row, config.plans),
        managedBy: row.managed_by,
        managedFields: row.managed_fields ?? [],
        released: row.released,
      },
    ]),
  );

  const declaredSlugs = new Set(slugs);
  const suffix = `.${config.server.baseDomain}`;
  const wanted = declared.flatMap((entry, index) => [
    ...(entry.hosts ?? []).map((host, position) => ({ host, key: `tenants.${index}.hosts.${position}` })),
    { host: `${entry.slug}${suffix}`, key: `tenants.${index}.slug` },
  ]);
  const owners = await db.query<{ host: string; slug: string }>(
    `SELECT h.host, t.slug FROM tenantry.tenant_hosts h JOIN tenantry.tenants t ON t.id = h.tenant_id
      WHERE h.host = ANY($1::text[])`,
    [wanted.map((entry) => entry.host)],
  );
  const ownerOf = new Map(owners.rows.map((row) => [row.host, row.slug]));
  for (const { host, key } of wanted) {
    const owner = ownerOf.get(host);
    if (owner !== undefined && !declaredSlugs.has(owner)) {
      throw new ConfigError(
        key,
        `host ${host} belongs to tenant "${owner}", which the config file does not declare: remove it from that tenant first`,
      );
    }
  }
  // `<label>.<baseDomain>` is the address of the tenant whose slug is `label`.
  const labels = wanted
    .filter(({ key, host }) => key.includes('.hosts.') && host.endsWith(suffix))
    .map(({ host, key }) => ({ label: host.slice(0, -suffix.length), key }))
    .filter(({ label }) => !label.includes('.') && !declaredSlugs.has(label));
  if (labels.length > 0) {
    const taken = await db.query<{ slug: string }>(
      `SELECT slug FROM tenantry.tenants WHERE status <> 'deleted' AND slug = ANY($1::text[])`,
      [labels.map((entry) => entry.label)],
    );
    const first = labels.find(({ label }) => taken.rows.some((row) => row.slug === label));
    if (first) {
      throw new ConfigError(
        first.key,
        `names the slug of tenant "${first.label}", which the file does not declare`,
      );
    }
  }
  return { declared, known };
}

/** How the sync changes tenants: the same validated, audited, announced changes as everyone's. */
export interface StaticSyncTenants {
  create(input: CreateTenantInput, context: ActionContext): Promise<{ tenant: Tenant; apiKey: IssuedApiKey }>;
  update(id: string, input: UpdateTenantInput, context: ActionContext): Promise<Tenant>;
  setStatus(id: string, status: 'active' | 'inactive', context: ActionContext): Promise<Tenant>;
}

export interface StaticSyncDeps {
  readonly tenants: StaticSyncTenants;
  readonly owner: ConnectionPool;
  readonly bus: ChangeBus;
  readonly config: TenantryConfig;
  readonly logger: EngineLogger;
}

interface SyncReport {
  created: { slug: string; id: string; apiKey: IssuedApiKey }[];
  updated: { slug: string; fields: string[] }[];
  activated: string[];
  deactivated: string[];
  skipped: string[];
}

/**
 * Makes the database match the declared tenants: creates the missing ones, updates the ones
 * that differ, and deactivates (never deletes) those the file declared before and no longer
 * does. Every change goes through the tenants' own changes as the config actor (validated,
 * audited, announced to other processes). Idempotent: a second run finds nothing to do.
 */
export async function applyStaticSync(plan: StaticSyncPlan, deps: StaticSyncDeps): Promise<StaticSyncReport> {
  const { declared, known } = plan;
  if (declared === undefined) return NO_SYNC;
  const report: SyncReport = { created: [], updated: [], activated: [], deactivated: [], skipped: [] };
  await releaseUndeclared(declared, known, deps, report);
  const latest = await releaseMovedHosts(declared, known, deps);
  for (const entry of declared) {
    const state = known.get(entry.slug);
    if (state)
      await syncDeclared(entry, state, latest.get(entry.slug) ?? state.tenant, declared, deps, report);
    else await createDeclared(entry, declared, deps, report);
  }
  const changed =
    report.created.length + report.updated.length + report.activated.length + report.deactivated.length;
  if (changed > 0) {
    await recordAudit(deps.owner, CONFIG_FILE_CONTEXT, {
      action: 'config.sync',
      outcome: 'success',
      target: deps.config.source ?? 'config',
      details: {
        created: report.created.map((entry) => entry.slug),
        updated: report.updated.map((entry) => entry.slug),
        activated: report.activated,
        deactivated: report.deactivated,
      },
    });
  }
  return report;
}

type Known = StaticSyncPlan['known'];

/** Tenants the file declared before and no longer does: deactivated (never deleted), released to the API. */
async function releaseUndeclared(
  declared: readonly StaticTenant[],
  known: Known,
  deps: StaticSyncDeps,
  report: SyncReport,
): Promise<void> {
  const declaredSlugs = new Set(declared.map((entry) => entry.slug));
  const source = deps.config.source ?? 'config';
  for (const [slug, state] of known) {
    if (declaredSlugs.has(slug) || state.managedBy === null) continue;
    if (isBeingBuilt(state.tenant.status)) {
      report.skipped.push(slug);
      deps.logger.warn(
        { tenant: slug },
        'tenant no longer declared in the config file is still being provisioned: left alone (run `tenantry tenants repair`)',
      );
      continue;
    }
    const wasActive = state.tenant.status === 'active';
    if (wasActive) await deps.tenants.setStatus(state.tenant.id, 'inactive', CONFIG_FILE_CONTEXT);
    await setManagement(deps, state.tenant, { managedBy: null, fields: [], released: wasActive });
    report.deactivated.push(slug);
    deps.logger.warn(
      { tenant: slug, source },
      wasActive
        ? 'tenant is no longer declared in the config file: deactivated (not deleted)'
        : 'tenant is no longer declared in the config file: it stays inactive and is managed through the API',
    );
  }
}

/**
 * A host moving from one declared tenant to another is released first, so the order of the
 * entries never matters. Returns the tenants that changed, as they are now.
 */
async function releaseMovedHosts(
  declared: readonly StaticTenant[],
  known: Known,
  deps: StaticSyncDeps,
): Promise<Map<string, Tenant>> {
  const wantedHosts = new Map<string, string>();
  for (const entry of declared) for (const host of entry.hosts ?? []) wantedHosts.set(host, entry.slug);
  const latest = new Map<string, Tenant>();
  for (const entry of declared) {
    const state = known.get(entry.slug);
    if (!state || isBeingBuilt(state.tenant.status)) continue;
    const kept = state.tenant.hosts.filter((host) => (wantedHosts.get(host) ?? entry.slug) === entry.slug);
    if (kept.length < state.tenant.hosts.length) {
      const updated = await deps.tenants
        .update(state.tenant.id, { hosts: kept }, CONFIG_FILE_CONTEXT)
        .catch(asConfigError(declared, entry));
      latest.set(entry.slug, updated);
    }
  }
  return latest;
}

async function createDeclared(
  entry: StaticTenant,
  declared: readonly StaticTenant[],
  deps: StaticSyncDeps,
  report: SyncReport,
): Promise<void> {
  const source = deps.config.source ?? 'config';
  const created = await deps.tenants
    .create(
      {
        name: entry.name,
        slug: entry.slug,
        ...(entry.hosts ? { hosts: [...entry.hosts] } : {}),
        ...(entry.isolation ? { isolation: entry.isolation } : {}),
        config: structuredClone(entry.config) as TenantConfig,
      },
      CONFIG_FILE_CONTEXT,
    )
    .catch(asConfigError(declared, entry));
  await setManagement(deps, created.tenant, {
    managedBy: source,
    fields: entry.fields,
    released: false,
  });
  report.created.push({ slug: entry.slug, id: created.tenant.id, apiKey: created.apiKey });
  deps.logger.info(
    { tenant: entry.slug, tenantId: created.tenant.id, source },
    'created tenant declared in the config file',
  );
}

/** A declared tenant that exists: its declared fields made true, its status and management kept right. */
async function syncDeclared(
  entry: StaticTenant,
  state: KnownTenant,
  tenant: Tenant,
  declared: readonly StaticTenant[],
  deps: StaticSyncDeps,
  report: SyncReport,
): Promise<void> {
  const { logger } = deps;
  if (isBeingBuilt(tenant.status)) {
    report.skipped.push(entry.slug);
    logger.warn(
      { tenant: entry.slug },
      'tenant declared in the config file is still being provisioned: left alone (run `tenantry tenants repair`)',
    );
    return;
  }
  const before = state.managedBy === null ? [] : state.managedFields;
  const change = desiredChange(tenant, entry, before, deps.config.tenancy.defaultPlan);
  if (Object.keys(change.input).length > 0) {
    await deps.tenants
      .update(tenant.id, change.input, CONFIG_FILE_CONTEXT)
      .catch(asConfigError(declared, entry));
  }
  const hostsMoved = tenant !== state.tenant;
  const fields = hostsMoved && !change.fields.includes('hosts') ? ['hosts', ...change.fields] : change.fields;
  if (fields.length > 0) report.updated.push({ slug: entry.slug, fields });
  const released = before.filter((field) => !entry.fields.includes(field as ManagedField));
  if (released.length > 0) {
    logger.info(
      { tenant: entry.slug, fields: released },
      'the config file no longer declares these fields of the tenant: reset, and changeable through the API',
    );
  }
  if (entry.isolation !== undefined && entry.isolation !== tenant.isolation) {
    logger.warn(
      { tenant: entry.slug, declared: entry.isolation, actual: tenant.isolation },
      'isolation in the config file applies when a tenant is created; an existing tenant is moved, not synced',
    );
  }
  if (tenant.status === 'inactive' && state.released) {
    await deps.tenants.setStatus(tenant.id, 'active', CONFIG_FILE_CONTEXT);
    report.activated.push(entry.slug);
    logger.info({ tenant: entry.slug }, 'tenant is declared in the config file again: activated');
  } else if (tenant.status === 'inactive' && state.managedBy === null) {
    logger.warn(
      { tenant: entry.slug },
      'tenant declared in the config file is inactive (an operator deactivated it): it stays inactive',
    );
  }
  const sameFields = isDeepStrictEqual([...state.managedFields].sort(), [...entry.fields].sort());
  if (state.managedBy === null || !sameFields || state.released) {
    await setManagement(deps, tenant, {
      managedBy: deps.config.source ?? 'config',
      fields: entry.fields,
      released: false,
    });
    if (state.managedBy === null)
      logger.info(
        { tenant: entry.slug, source: deps.config.source ?? 'config' },
        'existing tenant is now managed by the config file',
      );
  }
}

/** The update that makes a tenant match its entry: only what differs, nothing when it matches. */
function desiredChange(
  tenant: Tenant,
  entry: StaticTenant,
  before: readonly string[],
  defaultPlan: string | undefined,
): { input: { name?: string; hosts?: string[]; config?: TenantConfig }; fields: string[] } {
  const input: { name?: string; hosts?: string[]; config?: TenantConfig } = {};
  const fields: string[] = [];
  if (tenant.name !== entry.name) {
    input.name = entry.name;
    fields.push('name');
  }
  // A field the file declared before and no longer does goes back to what an undeclared tenant
  // has: no hosts, no override (the plan's values), the default plan.
  const hosts = entry.hosts ?? (before.includes('hosts') ? [] : undefined);
  if (hosts !== undefined && !isDeepStrictEqual([...hosts].sort(), [...tenant.hosts].sort())) {
    input.hosts = [...hosts];
    fields.push('hosts');
  }
  const config: Record<string, unknown> = structuredClone(tenant.config) as Record<string, unknown>;
  for (const section of CONFIG_SECTIONS) {
    const value = entry.config[section];
    if (value !== undefined) config[section] = structuredClone(value);
    else if (before.includes(section)) {
      if (section === 'plan' && defaultPlan !== undefined) config.plan = defaultPlan;
      else delete config[section];
    }
    if (!isDeepStrictEqual(config[section], tenant.config[section])) fields.push(section);
  }
  if (fields.some((field) => (CONFIG_SECTIONS as readonly string[]).includes(field)))
    input.config = config as TenantConfig;
  return { input, fields };
}

async function setManagement(
  deps: StaticSyncDeps,
  tenant: Tenant,
  management: { managedBy: string | null; fields: readonly string[]; released: boolean },
): Promise<void> {
  const audit = {
    action: management.managedBy === null ? 'tenant.config_file.release' : 'tenant.config_file.manage',
    tenantId: tenant.id,
    target: tenant.slug,
    details: { managedBy: management.managedBy, fields: management.fields },
  };
  await auditedChange({ bus: deps.bus }, deps.owner, CONFIG_FILE_CONTEXT, audit, async (tx) => {
    await tx.query(
      `UPDATE tenantry.tenants
          SET managed_by = $2, managed_fields = $3::text[],
              config_released_at = CASE WHEN $4::boolean THEN now() END
        WHERE id = $1`,
      [tenant.id, management.managedBy, management.fields, management.released],
    );
  });
}

/** A registry refusal of a declared tenant, named by its key in the file (`tenants.2.hosts.0`). */
function asConfigError(declared: readonly StaticTenant[], entry: StaticTenant): (error: unknown) => never {
  return (error: unknown) => {
    if (isTenantryError(error) && (error.code === 'validation_failed' || error.code === 'conflict')) {
      // The registry names its input (`hosts/0`, `config/limits/burst`); the file has no `config` level.
      const field = (error.field ?? '').replaceAll('/', '.').replace(/^config\./, '');
      const key = `tenants.${declared.indexOf(entry)}${field ? `.${field}` : ''}`;
      throw new ConfigError(key, error.message);
    }
    throw error;
  };
}
