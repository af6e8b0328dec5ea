import { v7 as uuidv7 } from 'uuid';
import { type IssuedApiKey, insertApiKey, prepareApiKey } from '../auth/api-key-store.js';
import type { Queryable, Session } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ProvisionedTenant } from '../isolation/tenant-provisioner.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import type { ChangeRecord } from '../runtime/audited-change.js';
import type { Tenant, TenantStatus } from '../tenants/tenant.js';
import { type CreateTenantInput, CreateTenantInputSchema } from '../tenants/tenant-input.js';
import {
  assertHostsFree,
  assertSlugFree,
  checkHosts,
  checkIsolation,
  checkName,
  checkSlug,
  checkTenantConfig,
  insertHosts,
  lockNamespace,
  translateConstraintError,
} from '../tenants/tenant-rules.js';
import { validate } from '../validation.js';
import { activateProvisioned, type LifecycleDeps, lifecycleChange } from './lifecycle-deps.js';

export interface CreatedTenant {
  readonly tenant: Tenant;
  readonly apiKey: IssuedApiKey;
}

/** A creation, checked: everything the transactions below need, nothing left to validate. */
export interface CheckedTenant {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly hosts: readonly string[];
  readonly isolation: Tenant['isolation'];
  readonly config: Tenant['config'];
  readonly server: string | undefined;
}

/** Validates a new tenant's input against the rules; gives it its id. */
export function checkNewTenant(deps: LifecycleDeps, input: CreateTenantInput): CheckedTenant {
  const data = validate(CreateTenantInputSchema, input);
  const rules = deps.rules();
  const slug = checkSlug(data.slug, rules);
  const hosts = checkHosts(data.hosts ?? [], rules);
  const isolation = checkIsolation(
    data.isolation ?? rules.tenancy.defaultIsolation,
    deps.db.driver === 'pglite',
  );
  const name = checkName(data.name);
  const plan = data.plan ?? data.config?.plan ?? rules.tenancy.defaultPlan;
  const config = checkTenantConfig({ ...data.config, ...(plan ? { plan } : {}) }, rules);
  if (data.server !== undefined && isolation !== 'database') {
    throw new TenantryError('validation_failed', 'only database tenants are placed on a server', {
      field: 'server',
    });
  }
  return { id: uuidv7(), slug, name, hosts, isolation, config, server: data.server };
}

/**
 * Creates a tenant with its first API key (shown once). A row tenant is one transaction. A schema
 * or database tenant is reserved as `provisioning` (unroutable), built, then activated, all under
 * the tenant's lock: a failure in between is cleaned up, and a crash leaves a `provisioning`
 * tenant that never resolves and that `tenants repair` (or the next `migrate`) finishes.
 */
export async function createTenant(
  deps: LifecycleDeps,
  input: CreateTenantInput,
  context: ActionContext,
): Promise<CreatedTenant> {
  const tenant = checkNewTenant(deps, input);
  // The key's slow hash runs on the thread pool while schema or database tenants are built.
  const preparing = prepareApiKey(deps.keyIterations());
  preparing.catch(() => undefined);
  const audit = { action: 'tenant.create', target: tenant.slug, tenantId: tenant.id };
  const finish = async (tx: Queryable, record: ChangeRecord): Promise<CreatedTenant> => {
    const apiKey = await insertApiKey(tx, tenant.id, await preparing);
    record.announce({ kind: 'tenant', tenantId: tenant.id });
    return { tenant: await deps.store.load(tx, tenant.id), apiKey };
  };
  if (tenant.isolation === 'row') {
    // Hashed before the transaction: it must not hold the namespace lock for tens of ms.
    await preparing;
    return lifecycleChange(deps, context, audit, async (tx, record) => {
      await reserve(deps, tx, tenant, 'active');
      return finish(tx, record);
    });
  }
  const version = await deps.storage.codeVersion();
  return deps.locks.with(tenant.id, async (session) => {
    const server = await session
      .transaction((tx) => reserve(deps, tx, tenant, 'provisioning'))
      .catch((error: unknown) => {
        throw translateConstraintError(error);
      });
    const provisioned = { id: tenant.id, isolation: tenant.isolation, server };
    try {
      await deps.provisioner.provision(session, provisioned, version);
    } catch (error) {
      await abandon(deps, session, provisioned, context, audit, error);
      throw new TenantryError('unavailable', 'the tenant could not be provisioned; nothing was kept', {
        cause: error,
      });
    }
    await preparing;
    return lifecycleChange(
      deps,
      context,
      audit,
      async (tx, record) => {
        await activateProvisioned(tx, tenant.id, version.version);
        return finish(tx, record);
      },
      session,
    );
  });
}

/** Inserts the tenant with its hosts, its slug and hosts checked free; returns its database server. */
export async function reserve(
  deps: LifecycleDeps,
  tx: Queryable,
  tenant: CheckedTenant,
  status: TenantStatus,
): Promise<string | null> {
  // Row tenants share the row-level tables: they are at those tables' version, read with a share
  // lock so a migration of those tables commits before or after, never around, this. Read before
  // the namespace lock, so a long migration never blocks other tenants' changes.
  const rowVersion =
    tenant.isolation === 'row'
      ? (
          await tx.query<{ version: number }>(
            "SELECT version FROM tenantry.storage_versions WHERE storage = 'row' FOR SHARE",
          )
        ).rows[0]?.version
      : null;
  await lockNamespace(tx);
  const rules = deps.rules();
  await assertSlugFree(tx, tenant.slug, tenant.id, rules);
  await assertHostsFree(tx, tenant.hosts, tenant, rules);
  const server = tenant.isolation === 'database' ? await deps.servers.choose(tx, tenant.server) : null;
  await tx.query(
    `INSERT INTO tenantry.tenants (id, slug, name, status, isolation, config, server, schema_version)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)`,
    [
      tenant.id,
      tenant.slug,
      tenant.name,
      status,
      tenant.isolation,
      JSON.stringify(tenant.config),
      server,
      rowVersion ?? null,
    ],
  );
  await insertHosts(tx, tenant.id, tenant.hosts);
  return server;
}

/** Removes what a failed provisioning built; the failure is audited. */
async function abandon(
  deps: LifecycleDeps,
  session: Session,
  tenant: ProvisionedTenant,
  context: ActionContext,
  audit: { action: string; target: string; tenantId: string },
  cause: unknown,
): Promise<void> {
  try {
    await deps.provisioner.deprovision(session, tenant, []);
    await session.query("DELETE FROM tenantry.tenants WHERE id = $1 AND status = 'provisioning'", [
      tenant.id,
    ]);
  } catch {
    // The tenant stays `provisioning`: it never resolves, and a repair finishes it.
  }
  await recordAudit(session, context, {
    ...audit,
    outcome: 'failure',
    details: { code: 'provisioning_failed', reason: cause instanceof Error ? cause.name : 'unknown' },
  }).catch(() => undefined);
}
