import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { Queryable } from '../db/database.js';
import { constraintOf, isSqlState } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';
import { assertJsonValue } from '../validation.js';
import { hostSkeleton, normalizeHost } from './host.js';
import { checkSlug as checkSlugText, isReservedSlug } from './slug.js';
import {
  effectiveConfig,
  ISOLATION_LEVELS,
  type IsolationLevel,
  type Plans,
  type TenantConfig,
} from './tenant.js';
import { settingsProblem } from './tenant-settings.js';
import { clip } from './tenant-store.js';

/**
 * What the rules of tenant names and configs depend on, read at each use: the deployment's
 * configuration (a config reload changes plans, reserved slugs and defaults).
 */
export interface TenancyRules {
  readonly plans: Plans;
  readonly settingsSchema: Readonly<Record<string, unknown>> | undefined;
  readonly tenancy: {
    readonly reservedSlugs: readonly string[];
    readonly defaultIsolation: IsolationLevel;
    readonly defaultPlan?: string | undefined;
  };
  readonly server: { readonly baseDomain: string };
}

export function checkSlug(raw: string, rules: TenancyRules): string {
  const checked = checkSlugText(raw, rules.tenancy.reservedSlugs);
  if (!checked.ok) throw new TenantryError('validation_failed', checked.message, { field: 'slug' });
  return checked.slug;
}

/** Normalised, without duplicates; never the base domain itself or one of its reserved names. */
export function checkHosts(raw: readonly string[], rules: TenancyRules): string[] {
  const hosts: string[] = [];
  const base = rules.server.baseDomain;
  raw.forEach((value, index) => {
    const field = `hosts/${index}`;
    const checked = normalizeHost(value);
    if (!checked.ok) throw new TenantryError('validation_failed', checked.message, { field });
    if (checked.host === base) {
      throw new TenantryError('validation_failed', `host ${checked.host} is the base domain itself`, {
        field,
      });
    }
    // `www.<baseDomain>`, `admin.<baseDomain>`, ...: the service's own names, no tenant's.
    const label = checked.host.endsWith(`.${base}`) ? checked.host.slice(0, -base.length - 1) : undefined;
    if (label !== undefined && !label.includes('.') && isReservedSlug(label, rules.tenancy.reservedSlugs)) {
      throw new TenantryError(
        'validation_failed',
        `host ${checked.host} is a reserved name under the base domain`,
        { field },
      );
    }
    if (!hosts.includes(checked.host)) hosts.push(checked.host);
  });
  return hosts;
}

export function checkName(raw: string): string {
  const name = raw.trim();
  if (name.length === 0)
    throw new TenantryError('validation_failed', 'name must not be blank', { field: 'name' });
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(name)) {
    throw new TenantryError('validation_failed', 'name must not contain control characters', {
      field: 'name',
    });
  }
  return name;
}

export function checkIsolation(value: string, embedded: boolean): IsolationLevel {
  if (!ISOLATION_LEVELS.includes(value as IsolationLevel)) {
    throw new TenantryError('validation_failed', 'isolation must be row, schema or database', {
      field: 'isolation',
    });
  }
  if (value === 'database' && embedded) {
    throw new TenantryError('validation_failed', 'database isolation needs PostgreSQL (DATABASE_URL)', {
      field: 'isolation',
    });
  }
  return value as IsolationLevel;
}

/** A tenant's own config: its plan must exist, and its effective settings fit `settingsSchema`. */
export function checkTenantConfig(config: TenantConfig, rules: TenancyRules): TenantConfig {
  // A request body was checked while parsed; the library's callers are checked here.
  assertJsonValue(config, 'config');
  if (config.plan !== undefined && !Object.hasOwn(rules.plans, config.plan)) {
    const known = Object.keys(rules.plans);
    throw new TenantryError(
      'validation_failed',
      `no plan "${clip(config.plan)}"${known.length > 0 ? ` (plans: ${known.join(', ')})` : ' (the config file declares no plans)'}`,
      { field: 'plan' },
    );
  }
  const problem = settingsProblem(rules.settingsSchema, effectiveConfig(config, rules.plans).settings);
  if (problem) throw new TenantryError('validation_failed', problem.message, { field: problem.field });
  return config;
}

/** Slugs and hosts change one transaction at a time (the checks below would race otherwise). */
export async function lockNamespace(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, LockKey.TENANT_NAMESPACE]);
}

/** A slug is free when no live tenant has it and no other tenant registered `<slug>.<baseDomain>`. */
export async function assertSlugFree(
  tx: Queryable,
  slug: string,
  selfId: string,
  rules: TenancyRules,
): Promise<void> {
  const { rows } = await tx.query(
    `SELECT 1 FROM tenantry.tenants WHERE slug = $1 AND status <> 'deleted' AND id <> $2
     UNION ALL
     SELECT 1 FROM tenantry.tenant_hosts WHERE host = $3 AND tenant_id <> $2`,
    [slug, selfId, `${slug}.${rules.server.baseDomain}`],
  );
  if (rows.length > 0)
    throw new TenantryError('conflict', `slug "${slug}" is already taken`, { field: 'slug' });
}

/**
 * Hosts are unique across tenants, so are their looks (`ıcme.com` is `icme.com` to a reader), and a
 * host directly under the base domain is the tenant's own slug or nothing (`beta.<baseDomain>`
 * belongs to the tenant whose slug is `beta`, even before it exists).
 */
export async function assertHostsFree(
  tx: Queryable,
  hosts: readonly string[],
  self: { readonly id: string; readonly slug: string },
  rules: TenancyRules,
): Promise<void> {
  const suffix = `.${rules.server.baseDomain}`;
  const suffixSkeleton = `.${hostSkeleton(rules.server.baseDomain)}`;
  for (const [index, host] of hosts.entries()) {
    const field = `hosts/${index}`;
    const skeleton = hostSkeleton(host);
    const { rows } = await tx.query<{ host: string }>(
      'SELECT host FROM tenantry.tenant_hosts WHERE (host = $1 OR skeleton = $3) AND tenant_id <> $2 LIMIT 1',
      [host, self.id, skeleton],
    );
    const taken = rows[0]?.host;
    if (taken === host)
      throw new TenantryError('conflict', `host ${host} belongs to another tenant`, { field });
    if (taken !== undefined)
      throw new TenantryError(
        'conflict',
        `host ${host} looks like ${taken}, which belongs to another tenant`,
        { field },
      );
    if (!host.endsWith(suffix)) {
      if (skeleton.endsWith(suffixSkeleton))
        throw new TenantryError('conflict', `host ${host} looks like a host under ${suffix.slice(1)}`, {
          field,
        });
      continue;
    }
    // `<label>.<baseDomain>` resolves to the tenant whose slug is `label`, whether or not that
    // tenant exists yet: registering it would take the slug from whoever signs up as `label`.
    const label = host.slice(0, -suffix.length);
    if (label.includes('.') || label === self.slug) continue;
    throw new TenantryError(
      'conflict',
      `host ${host} is reserved for the tenant whose slug is "${label}"; under ${suffix.slice(1)} a tenant may only use its own slug`,
      { field },
    );
  }
}

export async function insertHosts(tx: Queryable, tenantId: string, hosts: readonly string[]): Promise<void> {
  if (hosts.length === 0) return;
  await tx.query(
    `INSERT INTO tenantry.tenant_hosts (host, tenant_id, skeleton)
     SELECT host, $2::uuid, skeleton FROM unnest($1::text[], $3::text[]) AS h(host, skeleton)`,
    [hosts, tenantId, hosts.map(hostSkeleton)],
  );
}

/** Hosts stored before skeletons existed get theirs (the mapping lives here, not in SQL). */
export async function fillHostSkeletons(db: Queryable): Promise<void> {
  const { rows } = await db.query<{ host: string }>(
    'SELECT host FROM tenantry.tenant_hosts WHERE skeleton IS NULL',
  );
  if (rows.length === 0) return;
  const hosts = rows.map((row) => row.host);
  await db.query(
    `UPDATE tenantry.tenant_hosts t SET skeleton = h.skeleton
       FROM unnest($1::text[], $2::text[]) AS h(host, skeleton) WHERE t.host = h.host`,
    [hosts, hosts.map(hostSkeleton)],
  );
}

/** Races that pass the checks still hit the unique indexes: answer them as the checks would have. */
export function translateConstraintError(error: unknown): unknown {
  if (!isSqlState(error, 'UNIQUE_VIOLATION')) return error;
  const constraint = constraintOf(error);
  if (constraint === 'tenants_slug_key')
    return new TenantryError('conflict', 'slug is already taken', { field: 'slug' });
  if (constraint === 'tenant_hosts_pkey')
    return new TenantryError('conflict', 'host belongs to another tenant', { field: 'hosts' });
  return new TenantryError('conflict', 'the change conflicts with existing data', { cause: error });
}
