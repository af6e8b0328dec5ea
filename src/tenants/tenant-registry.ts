import { v7 as uuidv7 } from 'uuid';
import { checkKeyId, parseApiKeyRequest } from '../auth/api-key-input.js';
import type { ApiKeyInfo, IssuedApiKey } from '../auth/api-key-store.js';
import {
  countLiveKeys,
  insertApiKey,
  listTenantKeys,
  prepareApiKey,
  revokeTenantKey,
  revokeTenantKeys,
} from '../auth/api-key-store.js';
import { revokeTenantSessions } from '../auth/session-store.js';
import type { TenantryConfig } from '../config/config-schema.js';
import { LOCK_NAMESPACE, LockKey } from '../db/advisory-locks.js';
import type { Database, Queryable, Session } from '../db/database.js';
import { constraintOf, isSqlState } from '../db/sqlstate.js';
import type { Entity } from '../entities/entity.js';
import { SchemaDriftError } from '../entities/entity-schema.js';
import type { EntityVersion } from '../entities/entity-versions.js';
import { TenantryError } from '../errors.js';
import type { DatabaseServers } from '../isolation/database-servers.js';
import type { TenantLocks } from '../isolation/tenant-locks.js';
import type { ProvisionedTenant, TenantProvisioner } from '../isolation/tenant-provisioner.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import type { Change, ChangeBus } from '../runtime/change-bus.js';
import { QuotaExceededError } from '../runtime/quota.js';
import { assertJsonValue, validate } from '../validation.js';
import { normalizeHost } from './host.js';
import { assertNotDeclared, assertNotManaged, changedFields } from './managed-tenants.js';
import { checkSlug, isReservedSlug, isUuid } from './slug.js';
import {
  type EffectiveTenantConfig,
  effectiveConfig,
  ISOLATION_LEVELS,
  type IsolationLevel,
  TENANT_COLUMNS,
  type Tenant,
  type TenantConfig,
  TenantConfigSchema,
  type TenantRow,
  type TenantStatus,
  tenantFromRow,
} from './tenant.js';
import {
  type CreateTenantInput,
  CreateTenantInputSchema,
  HostInputSchema,
  ReplaceTenantInputSchema,
  type UpdateTenantInput,
  UpdateTenantInputSchema,
} from './tenant-input.js';
import { settingsProblem } from './tenant-settings.js';

export interface CreatedTenant {
  readonly tenant: Tenant;
  readonly apiKey: IssuedApiKey;
}

/** A further key of a tenant, shown once. */
export interface CreatedApiKey extends IssuedApiKey {
  readonly name: string;
  readonly expiresAt: Date | null;
  /** Null: every tenant permission. */
  readonly permissions: readonly string[] | null;
}

export interface ListTenantsOptions {
  readonly includeInactive?: boolean;
  readonly includeDeleted?: boolean;
  readonly limit?: number;
  /** The `next` cursor of the previous page. */
  readonly after?: string;
}

export interface TenantPage {
  readonly tenants: readonly Tenant[];
  readonly next: string | null;
}

interface Mutation<T> {
  readonly result: T;
  readonly changes: readonly Change[];
}

const MAX_PAGE = 1000;

/** What the registry needs of the entity-schema ledger and the servers. */
export interface TenantStorage {
  /** The code's entity version (registered on first use): new tenants are built at it. */
  codeVersion(): Promise<EntityVersion>;
  /** The entities the row-level tables are at (what a row tenant's purge deletes from). */
  rowEntities(): Promise<readonly Entity[]>;
  /** Differences between a tenant's tables and its recorded version. */
  check(tenant: Tenant): Promise<string[]>;
  readonly servers: DatabaseServers;
}

export interface RepairReport {
  readonly tenant: Tenant;
  readonly action: 'provisioned' | 'purged' | 'checked' | 'none';
  readonly detail: string;
  /** A new key for a tenant whose provisioning was finished, shown once. */
  readonly apiKey?: IssuedApiKey;
  readonly differences?: readonly string[];
}

/**
 * The tenants of this deployment: creation, lookup, changes and soft deletion. Every change is
 * one transaction that also writes its audit entry and announces itself to other processes.
 */
export class TenantRegistry {
  readonly #db: Database;
  readonly #bus: ChangeBus;
  readonly #currentConfig: () => TenantryConfig;

  readonly #provisioner: TenantProvisioner;
  readonly #locks: TenantLocks;
  readonly #storage: TenantStorage;

  /** `config` is read at each use: plans and tenancy defaults follow a config reload. */
  constructor(
    db: Database,
    bus: ChangeBus,
    config: TenantryConfig | (() => TenantryConfig),
    provisioning: { provisioner: TenantProvisioner; locks: TenantLocks; storage: TenantStorage },
  ) {
    this.#db = db;
    this.#bus = bus;
    this.#currentConfig = typeof config === 'function' ? config : () => config;
    this.#provisioner = provisioning.provisioner;
    this.#locks = provisioning.locks;
    this.#storage = provisioning.storage;
  }

  get #config(): TenantryConfig {
    return this.#currentConfig();
  }

  async create(input: unknown, context: ActionContext): Promise<CreatedTenant> {
    const data = validate(CreateTenantInputSchema, input);
    const slug = this.#checkSlug(data.slug);
    const hosts = this.#checkHosts(data.hosts ?? []);
    const isolation = this.#checkIsolation(data.isolation ?? this.#config.tenancy.defaultIsolation);
    const name = checkName(data.name);
    const config = this.#checkConfig({
      ...data.config,
      ...((data.plan ?? data.config?.plan ?? this.#config.tenancy.defaultPlan)
        ? { plan: data.plan ?? data.config?.plan ?? this.#config.tenancy.defaultPlan }
        : {}),
    });
    if (data.server !== undefined && isolation !== 'database') {
      throw new TenantryError('validation_failed', 'only database tenants are placed on a server', {
        field: 'server',
      });
    }
    // The key's slow hash runs on the thread pool while schema or database tenants are built.
    const preparing = prepareApiKey(this.#config.apiKeys.iterations);
    preparing.catch(() => undefined);
    const id = uuidv7();

    const audit = { action: 'tenant.create', target: slug, tenantId: id };
    const insert = async (tx: Queryable, status: TenantStatus) => {
      // Row tenants share the row-level tables: they are at those tables' version, read with a
      // share lock so a migration of those tables commits before or after, never around, this.
      // Read before the namespace lock, so a long migration never blocks other tenants' changes.
      const rowVersion =
        isolation === 'row'
          ? (
              await tx.query<{ version: number }>(
                "SELECT version FROM tenantry.storage_versions WHERE storage = 'row' FOR SHARE",
              )
            ).rows[0]?.version
          : null;
      await lockNamespace(tx);
      await this.#assertSlugFree(tx, slug, id);
      await this.#assertHostsFree(tx, hosts, id, slug);
      const server = isolation === 'database' ? await this.#storage.servers.choose(tx, data.server) : null;
      await tx.query(
        `INSERT INTO tenantry.tenants (id, slug, name, status, isolation, config, server, schema_version)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)`,
        [id, slug, name, status, isolation, JSON.stringify(config), server, rowVersion ?? null],
      );
      await insertHosts(tx, id, hosts);
      return server;
    };
    const finish = async (tx: Queryable): Promise<Mutation<CreatedTenant>> => {
      const apiKey = await insertApiKey(tx, id, await preparing);
      const tenant = await this.#load(tx, id);
      return { result: { tenant, apiKey }, changes: [{ kind: 'tenant', tenantId: id }] };
    };
    // Row tenants share existing tables: the whole creation is one transaction.
    if (isolation === 'row') {
      // Hashed before the transaction: it must not hold the namespace lock for tens of ms.
      await preparing;
      return this.#mutate(context, audit, async (tx) => {
        await insert(tx, 'active');
        return finish(tx);
      });
    }
    // Schema and database tenants: reserve the slug and hosts as `provisioning` (unroutable),
    // build the schema or database, then activate, all under the tenant's lock. A failure in
    // between is cleaned up; a crash releases the lock and leaves a `provisioning` tenant that
    // never resolves and that `tenants repair` (or the next `migrate`) finishes.
    const version = await this.#storage.codeVersion();
    return this.#locks.with(id, async (session) => {
      const server = await session
        .transaction((tx) => insert(tx, 'provisioning'))
        .catch((error: unknown) => {
          throw translateConstraintError(error);
        });
      try {
        await this.#provisioner.provision(session, { id, isolation, server }, version);
      } catch (error) {
        await this.#abandon(session, { id, isolation, server }, context, audit, error);
        throw new TenantryError('unavailable', 'the tenant could not be provisioned; nothing was kept', {
          cause: error,
        });
      }
      await preparing;
      return this.#mutate(
        context,
        audit,
        async (tx) => {
          await activateProvisioned(tx, id, version.version);
          return finish(tx);
        },
        session,
      );
    });
  }

  async #abandon(
    session: Session,
    tenant: ProvisionedTenant,
    context: ActionContext,
    audit: { action: string; target: string; tenantId: string },
    cause: unknown,
  ): Promise<void> {
    try {
      await this.#provisioner.deprovision(session, tenant, []);
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

  /**
   * Finishes what a crash interrupted for one tenant: a `provisioning` tenant is built and
   * activated (with a new API key, shown once: nobody ever saw the first one); a deleted tenant
   * waiting for its purge is purged; a live tenant's tables are checked against its version.
   */
  async repair(idOrSlug: string, context: ActionContext): Promise<RepairReport> {
    const tenant = await this.get(idOrSlug, { includeDeleted: true });
    // A purge that was asked for wins over everything: never bring such a tenant back.
    if (await this.#purgePending(tenant.id)) {
      await this.purge(tenant.id, context);
      return { tenant: { ...tenant, status: 'deleted' }, action: 'purged', detail: 'the purge was finished' };
    }
    if (tenant.status === 'deleted') {
      return { tenant, action: 'none', detail: 'deleted without purge: nothing to repair' };
    }
    if (tenant.status === 'provisioning') {
      const version = await this.#storage.codeVersion();
      const prepared = await prepareApiKey(this.#config.apiKeys.iterations);
      const issued = await this.#locks.with(
        tenant.id,
        async (session) => {
          const { rows } = await session.query<{ pending: boolean }>(
            `SELECT purge_requested_at IS NOT NULL AS pending FROM tenantry.tenants
              WHERE id = $1 AND status = 'provisioning'`,
            [tenant.id],
          );
          if (rows.length === 0 || rows[0]?.pending) return undefined;
          try {
            await this.#provisioner.provision(session, tenant, version);
          } catch (error) {
            if (!(error instanceof SchemaDriftError)) throw error;
            // Built at another version before the crash: nobody ever saw this tenant, so its
            // half-built storage is dropped and built again at the code's version.
            await this.#provisioner.deprovision(session, tenant, []);
            await this.#provisioner.provision(session, tenant, version);
          }
          return this.#mutate(
            context,
            { action: 'tenant.repair', target: tenant.slug, tenantId: tenant.id },
            async (tx) => {
              await activateProvisioned(tx, tenant.id, version.version);
              const apiKey = await insertApiKey(tx, tenant.id, prepared);
              return { result: apiKey, changes: [{ kind: 'tenant', tenantId: tenant.id }] };
            },
            session,
          );
        },
        { wait: false },
      );
      const repaired = (await this.findById(tenant.id)) ?? tenant;
      return issued
        ? { tenant: repaired, action: 'provisioned', detail: 'provisioning was finished', apiKey: issued }
        : { tenant: repaired, action: 'none', detail: 'nothing to finish' };
    }
    const differences = await this.#storage.check(tenant);
    return {
      tenant,
      action: 'checked',
      detail:
        differences.length === 0
          ? `tables match entity version ${tenant.schemaVersion}`
          : `tables differ from entity version ${tenant.schemaVersion}:\n  ${differences.join('\n  ')}`,
      differences,
    };
  }

  async #purgePending(id: string): Promise<boolean> {
    const { rows } = await this.#db.owner.query(
      'SELECT 1 FROM tenantry.tenants WHERE id = $1 AND purge_requested_at IS NOT NULL',
      [id],
    );
    return rows.length > 0;
  }

  /**
   * Removes a deleted tenant for good: its rows, schema or database, its keys and its record
   * (the audit trail stays). The tenant stopped resolving when it was deleted (keys revoked and
   * hosts released first), so nothing routable is left while this runs; it is resumable.
   */
  async purge(id: string, context: ActionContext): Promise<void> {
    // Read before taking the lock: a lock holder must not wait for a second pool connection.
    const rowEntities = await this.#storage.rowEntities();
    await this.#locks.with(id, async (session) => {
      const tenant = await this.findById(id, session);
      if (!tenant) return;
      if (tenant.status !== 'deleted' && tenant.status !== 'provisioning') {
        throw new TenantryError('conflict', 'only a deleted tenant can be purged', { field: 'status' });
      }
      await this.#provisioner.deprovision(session, tenant, rowEntities);
      await session.transaction(async (tx) => {
        await tx.query('DELETE FROM tenantry.tenants WHERE id = $1', [id]);
        await recordAudit(tx, context, {
          action: 'tenant.purge',
          target: tenant.slug,
          tenantId: id,
          outcome: 'success',
          details: { isolation: tenant.isolation },
        });
      });
    });
  }

  /**
   * Tenants a crash left half done: `provisioning` ones nobody is working on, and deleted ones
   * waiting for their purge. `migrate` finishes them after the fleet.
   */
  async finishPending(
    context: ActionContext,
  ): Promise<{ repaired: string[]; purged: string[]; failed: { tenantId: string; error: string }[] }> {
    const { rows } = await this.#db.owner.query<{ id: string; status: TenantStatus }>(
      `SELECT id, status FROM tenantry.tenants
        WHERE status = 'provisioning' OR purge_requested_at IS NOT NULL ORDER BY id`,
    );
    const result = {
      repaired: [] as string[],
      purged: [] as string[],
      failed: [] as { tenantId: string; error: string }[],
    };
    for (const row of rows) {
      if (await this.#locks.isBusy(row.id)) continue;
      try {
        const report = await this.repair(row.id, context);
        if (report.action === 'provisioned') result.repaired.push(row.id);
        if (report.action === 'purged') result.purged.push(row.id);
      } catch (error) {
        result.failed.push({
          tenantId: row.id,
          error: error instanceof Error ? error.message : String(error),
        });
      }
    }
    return result;
  }

  /** Looks a tenant up by id or slug; deleted tenants only by id and only when asked for. */
  async get(idOrSlug: string, options: { includeDeleted?: boolean } = {}): Promise<Tenant> {
    const tenant = await this.find(idOrSlug, options);
    if (!tenant) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
    return tenant;
  }

  async find(idOrSlug: string, options: { includeDeleted?: boolean } = {}): Promise<Tenant | undefined> {
    if (typeof idOrSlug !== 'string' || idOrSlug.length === 0 || idOrSlug.length > 100) return undefined;
    if (isUuid(idOrSlug.toLowerCase())) {
      const tenant = await this.findById(idOrSlug.toLowerCase());
      return tenant && (tenant.status !== 'deleted' || options.includeDeleted) ? tenant : undefined;
    }
    return this.findBySlug(idOrSlug);
  }

  async findById(id: string, db: Queryable = this.#db.runtime): Promise<Tenant | undefined> {
    const { rows } = await db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.id = $1`,
      [id],
    );
    return rows[0] && tenantFromRow(rows[0], this.#config.plans);
  }

  async findBySlug(slug: string): Promise<Tenant | undefined> {
    const { rows } = await this.#db.runtime.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.slug = $1 AND t.status <> 'deleted'`,
      [slug],
    );
    return rows[0] && tenantFromRow(rows[0], this.#config.plans);
  }

  /** The tenant id a registered host belongs to. */
  async tenantIdForHost(host: string): Promise<string | undefined> {
    const { rows } = await this.#db.runtime.query<{ tenant_id: string }>(
      'SELECT tenant_id FROM tenantry.tenant_hosts WHERE host = $1',
      [host],
    );
    return rows[0]?.tenant_id;
  }

  async list(options: ListTenantsOptions = {}): Promise<TenantPage> {
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE) {
      throw new TenantryError('validation_failed', `limit must be an integer from 1 to ${MAX_PAGE}`, {
        field: 'limit',
      });
    }
    if (options.after !== undefined && !isUuid(options.after)) {
      throw new TenantryError('validation_failed', 'after must be a cursor returned as next', {
        field: 'after',
      });
    }
    const statuses: TenantStatus[] = ['active'];
    if (options.includeInactive) statuses.push('inactive');
    if (options.includeDeleted) statuses.push('deleted');
    const { rows } = await this.#db.runtime.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t
        WHERE t.status = ANY($1::text[]) AND ($2::uuid IS NULL OR t.id > $2::uuid)
        ORDER BY t.id LIMIT $3`,
      [statuses, options.after ?? null, limit + 1],
    );
    const tenants = rows.slice(0, limit).map((row) => tenantFromRow(row, this.#config.plans));
    return { tenants, next: rows.length > limit ? (tenants.at(-1)?.id ?? null) : null };
  }

  /** PATCH semantics: only the given fields change; `config` is replaced as a whole. */
  async update(idOrSlug: string, input: unknown, context: ActionContext): Promise<Tenant> {
    return this.#applyUpdate(idOrSlug, validate(UpdateTenantInputSchema, input), context, 'tenant.update');
  }

  /** PUT semantics: name, slug, hosts and config are all given and replace what was there. */
  async replace(idOrSlug: string, input: unknown, context: ActionContext): Promise<Tenant> {
    return this.#applyUpdate(idOrSlug, validate(ReplaceTenantInputSchema, input), context, 'tenant.replace');
  }

  async activate(idOrSlug: string, context: ActionContext): Promise<Tenant> {
    return this.#setStatus(idOrSlug, 'active', context);
  }

  async deactivate(idOrSlug: string, context: ActionContext): Promise<Tenant> {
    return this.#setStatus(idOrSlug, 'inactive', context);
  }

  /**
   * Soft delete: the tenant stops resolving at once (its keys are revoked and its hosts released
   * first), its slug becomes free, and its record stays for the audit trail.
   */
  async delete(idOrSlug: string, context: ActionContext, options: { purge?: boolean } = {}): Promise<Tenant> {
    const found = options.purge
      ? await this.#toPurge(idOrSlug)
      : await this.get(idOrSlug, { includeDeleted: false });
    if (options.purge && (found.status === 'deleted' || found.status === 'provisioning')) {
      await this.#db.owner.query(
        'UPDATE tenantry.tenants SET purge_requested_at = coalesce(purge_requested_at, now()) WHERE id = $1',
        [found.id],
      );
      await this.purge(found.id, context);
      return { ...found, status: 'deleted' };
    }
    const deleted = await this.#softDelete(found, idOrSlug, context, options.purge === true);
    if (options.purge) await this.purge(deleted.id, context);
    return deleted;
  }

  /**
   * The tenant a purge names: by id, any tenant; by slug, the live tenant holding it, or else the
   * one soft-deleted tenant that had it (its slug was freed by the soft delete). When several
   * deleted tenants had the slug, the caller must say which, by id.
   */
  async #toPurge(idOrSlug: string): Promise<Tenant> {
    if (isUuid(idOrSlug.toLowerCase())) return this.get(idOrSlug, { includeDeleted: true });
    const live = await this.find(idOrSlug);
    if (live) return live;
    const { rows } = await this.#db.owner.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.slug = $1 AND t.status = 'deleted'
        ORDER BY t.updated_at DESC LIMIT 2`,
      [idOrSlug],
    );
    if (rows.length > 1) {
      throw new TenantryError(
        'conflict',
        `several deleted tenants had the slug "${clip(idOrSlug)}": purge one by its id`,
      );
    }
    if (!rows[0]) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
    return tenantFromRow(rows[0], this.#config.plans);
  }

  async #softDelete(
    current: Tenant,
    idOrSlug: string,
    context: ActionContext,
    purge: boolean,
  ): Promise<Tenant> {
    return this.#mutate(
      context,
      { action: 'tenant.delete', target: current.slug, tenantId: current.id },
      async (tx) => {
        await assertNotDeclared(tx, current, context);
        const revoked = await revokeTenantKeys(tx, current.id);
        await revokeTenantSessions(tx, current.id);
        await tx.query('DELETE FROM tenantry.tenant_hosts WHERE tenant_id = $1', [current.id]);
        const { rowCount } = await tx.query(
          `UPDATE tenantry.tenants SET status = 'deleted', deleted_at = now(), updated_at = now(),
                  purge_requested_at = CASE WHEN $2 THEN now() END
          WHERE id = $1 AND status <> 'deleted'`,
          [current.id, purge],
        );
        if (rowCount === 0) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
        const tenant = await this.#load(tx, current.id);
        const changes: Change[] = [
          { kind: 'tenant', tenantId: current.id },
          // Its tenant-scoped cache goes with it, in every process.
          { kind: 'cache', tenantId: current.id },
          ...revoked.map((keyId): Change => ({ kind: 'key', tenantId: current.id, keyId })),
        ];
        return { result: tenant, changes };
      },
    );
  }

  async addHost(idOrSlug: string, input: unknown, context: ActionContext): Promise<Tenant> {
    const { host: raw } = validate(HostInputSchema, input);
    const host = this.#checkHosts([raw])[0] as string;
    const current = await this.get(idOrSlug);
    return this.#mutate(
      context,
      { action: 'tenant.host.add', target: host, tenantId: current.id },
      async (tx) => {
        await lockNamespace(tx);
        const locked = await this.#lockLive(tx, current.id, idOrSlug);
        if (locked.hosts.includes(host)) return { result: locked, changes: [] };
        await assertNotManaged(tx, locked, ['hosts'], context);
        await this.#assertHostsFree(tx, [host], current.id, locked.slug);
        await insertHosts(tx, current.id, [host]);
        return {
          result: await this.#load(tx, current.id),
          changes: [{ kind: 'tenant', tenantId: current.id }],
        };
      },
    );
  }

  async removeHost(idOrSlug: string, rawHost: string, context: ActionContext): Promise<Tenant> {
    const checked = normalizeHost(rawHost);
    const current = await this.get(idOrSlug);
    const host = checked.ok ? checked.host : String(rawHost);
    return this.#mutate(
      context,
      { action: 'tenant.host.remove', target: clip(host), tenantId: current.id },
      async (tx) => {
        const { rowCount } = await tx.query(
          'DELETE FROM tenantry.tenant_hosts WHERE host = $1 AND tenant_id = $2',
          [host, current.id],
        );
        if (rowCount === 0) {
          throw new TenantryError('not_found', `tenant "${current.slug}" has no host "${clip(host)}"`, {
            field: 'host',
          });
        }
        await assertNotManaged(tx, current, ['hosts'], context);
        return {
          result: await this.#load(tx, current.id),
          changes: [{ kind: 'tenant', tenantId: current.id }],
        };
      },
    );
  }

  /** Revokes the tenant's keys and issues a new one, shown once. */
  async regenerateApiKey(idOrSlug: string, context: ActionContext): Promise<IssuedApiKey> {
    const current = await this.get(idOrSlug);
    const prepared = await prepareApiKey(this.#config.apiKeys.iterations);
    return this.#mutate(
      context,
      { action: 'tenant.key.regenerate', target: current.slug, tenantId: current.id },
      async (tx) => {
        await this.#lockLive(tx, current.id, idOrSlug);
        const revoked = await revokeTenantKeys(tx, current.id);
        const issued = await insertApiKey(tx, current.id, prepared);
        const changes = revoked.map((keyId): Change => ({ kind: 'key', tenantId: current.id, keyId }));
        return { result: issued, changes };
      },
    );
  }

  /**
   * Issues a further key (shown once), keeping the others. Refused with `quota_exceeded` when the
   * tenant already has `limits.maxApiKeys` live keys: they are counted with the tenant's row
   * locked, so concurrent creations take turns and never pass the limit together.
   */
  async createApiKey(
    idOrSlug: string,
    input: unknown,
    context: ActionContext,
    options: { createdBy?: string | null } = {},
  ): Promise<CreatedApiKey> {
    const request = parseApiKeyRequest(input);
    const current = await this.get(idOrSlug);
    // Hashed before the transaction: the slow hash must not hold the tenant's lock.
    const prepared = await prepareApiKey(this.#config.apiKeys.iterations);
    return this.#mutate(
      context,
      { action: 'tenant.key.create', target: current.slug, tenantId: current.id },
      async (tx) => {
        const locked = await this.#lockLive(tx, current.id, idOrSlug);
        if (locked.status === 'provisioning') {
          throw new TenantryError('conflict', 'the tenant is still being provisioned');
        }
        const max = locked.effective.limits.maxApiKeys;
        if (max !== undefined) {
          const live = await countLiveKeys(tx, current.id);
          if (live >= max) {
            throw new QuotaExceededError(
              locked.slug,
              'maxApiKeys',
              `this tenant may have ${max} live API keys (it has ${live}); revoke one first`,
            );
          }
        }
        const issued = await insertApiKey(tx, current.id, prepared, request.name, request.expiresAt, {
          permissions: request.permissions,
          createdBy: options.createdBy ?? null,
        });
        return {
          result: {
            ...issued,
            name: request.name,
            expiresAt: request.expiresAt,
            permissions: request.permissions,
          },
          changes: [],
        };
      },
    );
  }

  /**
   * Revokes one key; it stops authenticating at once, here and (through the change bus) in every
   * other process. Revoking a revoked key changes nothing.
   */
  async revokeApiKey(idOrSlug: string, keyId: string, context: ActionContext): Promise<ApiKeyInfo> {
    const checked = checkKeyId(keyId);
    const current = await this.get(idOrSlug);
    return this.#mutate(
      context,
      { action: 'tenant.key.revoke', target: checked, tenantId: current.id },
      async (tx) => {
        await this.#lockLive(tx, current.id, idOrSlug);
        const revokedNow = await revokeTenantKey(tx, current.id, checked);
        if (revokedNow === undefined) {
          throw new TenantryError('not_found', `tenant "${current.slug}" has no key ${checked}`, {
            field: 'keyId',
          });
        }
        const [info] = await listTenantKeys(tx, current.id, true, checked);
        const changes: Change[] = revokedNow ? [{ kind: 'key', tenantId: current.id, keyId: checked }] : [];
        return { result: info!, changes };
      },
    );
  }

  async #applyUpdate(
    idOrSlug: string,
    data: UpdateTenantInput,
    context: ActionContext,
    action: string,
  ): Promise<Tenant> {
    const current = await this.get(idOrSlug);
    if (data.isolation !== undefined && data.isolation !== current.isolation) {
      throw new TenantryError(
        'conflict',
        'isolation cannot be changed by an update; move the tenant instead',
        {
          field: 'isolation',
        },
      );
    }
    const name = data.name === undefined ? undefined : checkName(data.name);
    const config = data.config === undefined ? undefined : this.#checkConfig(data.config);
    const slug = data.slug === undefined ? undefined : this.#checkSlug(data.slug);
    const hosts = data.hosts === undefined ? undefined : this.#checkHosts(data.hosts);
    return this.#mutate(context, { action, target: current.slug, tenantId: current.id }, async (tx) => {
      await lockNamespace(tx);
      const locked = await this.#lockLive(tx, current.id, idOrSlug);
      await assertNotManaged(tx, locked, changedFields(locked, { name, slug, hosts, config }), context);
      const newSlug = slug ?? locked.slug;
      if (slug !== undefined && slug !== locked.slug) await this.#assertSlugFree(tx, slug, current.id);
      if (hosts !== undefined) {
        await tx.query('DELETE FROM tenantry.tenant_hosts WHERE tenant_id = $1', [current.id]);
        await this.#assertHostsFree(tx, hosts, current.id, newSlug);
        await insertHosts(tx, current.id, hosts);
      } else if (newSlug !== locked.slug) {
        await this.#assertHostsFree(tx, [], current.id, newSlug);
      }
      await tx.query(
        `UPDATE tenantry.tenants
            SET name = coalesce($2, name), slug = $3, config = coalesce($4::jsonb, config), updated_at = now()
          WHERE id = $1`,
        [current.id, name ?? null, newSlug, config === undefined ? null : JSON.stringify(config)],
      );
      return {
        result: await this.#load(tx, current.id),
        changes: [{ kind: 'tenant', tenantId: current.id }],
      };
    });
  }

  async #setStatus(idOrSlug: string, status: 'active' | 'inactive', context: ActionContext): Promise<Tenant> {
    const current = await this.get(idOrSlug);
    const action = status === 'active' ? 'tenant.activate' : 'tenant.deactivate';
    return this.#mutate(context, { action, target: current.slug, tenantId: current.id }, async (tx) => {
      const locked = await this.#lockLive(tx, current.id, idOrSlug);
      if (locked.status === 'provisioning') {
        throw new TenantryError('conflict', 'the tenant is still being provisioned', { field: 'status' });
      }
      if (locked.status === status) return { result: locked, changes: [] };
      // An operator's decision replaces the sync's: a tenant deactivated by hand stays so.
      await tx.query(
        'UPDATE tenantry.tenants SET status = $2, config_released_at = NULL, updated_at = now() WHERE id = $1',
        [current.id, status],
      );
      // Its users' sessions end with it: reactivating the tenant does not bring them back.
      if (status === 'inactive') await revokeTenantSessions(tx, current.id);
      return {
        result: await this.#load(tx, current.id),
        changes: [{ kind: 'tenant', tenantId: current.id }],
      };
    });
  }

  /** Locks the tenant row for the rest of the transaction; refuses tenants deleted meanwhile. */
  async #lockLive(tx: Queryable, id: string, idOrSlug: string): Promise<Tenant> {
    const { rows } = await tx.query<{ id: string }>(
      `SELECT id FROM tenantry.tenants WHERE id = $1 AND status <> 'deleted' FOR UPDATE`,
      [id],
    );
    if (rows.length === 0) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
    return this.#load(tx, id);
  }

  async #load(tx: Queryable, id: string): Promise<Tenant> {
    const tenant = await this.findById(id, tx);
    if (!tenant) throw new TenantryError('tenant_not_found', `no tenant "${id}"`);
    return tenant;
  }

  async #mutate<T>(
    context: ActionContext,
    audit: { action: string; target: string; tenantId: string },
    work: (tx: Queryable) => Promise<Mutation<T>>,
    session: Session = this.#db.owner,
  ): Promise<T> {
    let mutation: Mutation<T>;
    try {
      mutation = await session.transaction(async (tx) => {
        const done = await work(tx);
        for (const change of done.changes) await this.#bus.announce(tx, change);
        await recordAudit(tx, context, { ...audit, outcome: 'success' });
        return done;
      });
    } catch (error) {
      const translated = translateConstraintError(error);
      await recordAudit(session, context, {
        ...audit,
        outcome: 'failure',
        details: { code: translated instanceof TenantryError ? translated.code : 'internal' },
      }).catch(() => undefined);
      throw translated;
    }
    for (const change of mutation.changes) this.#bus.applied(change);
    return mutation.result;
  }

  /** A tenant's own config: its plan must exist, and its effective settings fit `settingsSchema`. */
  #checkConfig(config: TenantConfig): TenantConfig {
    // A request body was checked while parsed; the library's callers are checked here.
    assertJsonValue(config, 'config');
    if (config.plan !== undefined && !Object.hasOwn(this.#config.plans, config.plan)) {
      const known = Object.keys(this.#config.plans);
      throw new TenantryError(
        'validation_failed',
        `no plan "${clip(config.plan)}"${known.length > 0 ? ` (plans: ${known.join(', ')})` : ' (the config file declares no plans)'}`,
        { field: 'plan' },
      );
    }
    const problem = settingsProblem(
      this.#config.settingsSchema,
      effectiveConfig(config, this.#config.plans).settings,
    );
    if (problem) throw new TenantryError('validation_failed', problem.message, { field: problem.field });
    return config;
  }

  /** The tenant's configuration: its plan, what it overrides, and the effective result. */
  async configOf(idOrSlug: string): Promise<TenantConfigView> {
    return configView(await this.get(idOrSlug));
  }

  /**
   * Sets and unsets values by path (`plan`, `features`, `limits.requestsPerSecond`,
   * `branding.primaryColor`, `settings.<key>...`), all in one change; unsetting a value makes the
   * plan's apply again. The result is validated as a whole before anything is written.
   */
  async changeConfig(
    idOrSlug: string,
    change: { set?: Readonly<Record<string, unknown>>; unset?: readonly string[] },
    context: ActionContext,
  ): Promise<TenantConfigView> {
    const current = await this.get(idOrSlug);
    const tenant = await this.#mutate(
      context,
      { action: 'tenant.config', target: current.slug, tenantId: current.id },
      async (tx) => {
        const locked = await this.#lockLive(tx, current.id, idOrSlug);
        let next: Record<string, unknown> = structuredClone(locked.config) as Record<string, unknown>;
        for (const path of change.unset ?? []) next = withPath(next, parseConfigPath(path), undefined);
        for (const [path, value] of Object.entries(change.set ?? {})) {
          next = withPath(next, parseConfigPath(path), value);
        }
        const checked = this.#checkConfig(validate(TenantConfigSchema, next));
        await assertNotManaged(tx, locked, changedFields(locked, { config: checked }), context);
        await tx.query('UPDATE tenantry.tenants SET config = $2::jsonb, updated_at = now() WHERE id = $1', [
          current.id,
          JSON.stringify(checked),
        ]);
        return {
          result: await this.#load(tx, current.id),
          changes: [{ kind: 'tenant', tenantId: current.id }],
        };
      },
    );
    return configView(tenant);
  }

  #checkSlug(raw: string): string {
    const checked = checkSlug(raw, this.#config.tenancy.reservedSlugs);
    if (!checked.ok) throw new TenantryError('validation_failed', checked.message, { field: 'slug' });
    return checked.slug;
  }

  #checkHosts(raw: readonly string[]): string[] {
    const hosts: string[] = [];
    raw.forEach((value, index) => {
      const checked = normalizeHost(value);
      if (!checked.ok)
        throw new TenantryError('validation_failed', checked.message, { field: `hosts/${index}` });
      const base = this.#config.server.baseDomain;
      if (checked.host === base) {
        throw new TenantryError('validation_failed', `host ${checked.host} is the base domain itself`, {
          field: `hosts/${index}`,
        });
      }
      // `www.<baseDomain>`, `admin.<baseDomain>`, ...: the service's own names, no tenant's.
      const label = checked.host.endsWith(`.${base}`) ? checked.host.slice(0, -base.length - 1) : undefined;
      if (
        label !== undefined &&
        !label.includes('.') &&
        isReservedSlug(label, this.#config.tenancy.reservedSlugs)
      ) {
        throw new TenantryError(
          'validation_failed',
          `host ${checked.host} is a reserved name under the base domain`,
          {
            field: `hosts/${index}`,
          },
        );
      }
      if (!hosts.includes(checked.host)) hosts.push(checked.host);
    });
    return hosts;
  }

  #checkIsolation(value: string): IsolationLevel {
    if (!ISOLATION_LEVELS.includes(value as IsolationLevel)) {
      throw new TenantryError('validation_failed', 'isolation must be row, schema or database', {
        field: 'isolation',
      });
    }
    if (value === 'database' && this.#db.driver === 'pglite') {
      throw new TenantryError('validation_failed', 'database isolation needs PostgreSQL (DATABASE_URL)', {
        field: 'isolation',
      });
    }
    return value as IsolationLevel;
  }

  async #assertSlugFree(tx: Queryable, slug: string, selfId: string): Promise<void> {
    const { rows } = await tx.query(
      `SELECT 1 FROM tenantry.tenants WHERE slug = $1 AND status <> 'deleted' AND id <> $2
       UNION ALL
       SELECT 1 FROM tenantry.tenant_hosts WHERE host = $3 AND tenant_id <> $2`,
      [slug, selfId, `${slug}.${this.#config.server.baseDomain}`],
    );
    if (rows.length > 0)
      throw new TenantryError('conflict', `slug "${slug}" is already taken`, { field: 'slug' });
  }

  /**
   * Hosts are unique across tenants, and a host under the base domain must not name another
   * tenant's slug (`beta.<baseDomain>` belongs to the tenant whose slug is `beta`).
   */
  async #assertHostsFree(
    tx: Queryable,
    hosts: readonly string[],
    selfId: string,
    selfSlug: string,
  ): Promise<void> {
    const suffix = `.${this.#config.server.baseDomain}`;
    for (const [index, host] of hosts.entries()) {
      const { rows } = await tx.query(
        'SELECT 1 FROM tenantry.tenant_hosts WHERE host = $1 AND tenant_id <> $2',
        [host, selfId],
      );
      if (rows.length > 0) {
        throw new TenantryError('conflict', `host ${host} belongs to another tenant`, {
          field: `hosts/${index}`,
        });
      }
      if (host.endsWith(suffix)) {
        const label = host.slice(0, -suffix.length);
        if (!label.includes('.') && label !== selfSlug) {
          const owner = await tx.query(
            `SELECT 1 FROM tenantry.tenants WHERE slug = $1 AND status <> 'deleted' AND id <> $2`,
            [label, selfId],
          );
          if (owner.rows.length > 0) {
            throw new TenantryError('conflict', `host ${host} names another tenant's slug`, {
              field: `hosts/${index}`,
            });
          }
        }
      }
    }
  }
}

/**
 * Makes a provisioned tenant live, unless it changed meanwhile: a purge requested while it was
 * being built (which waits for the tenant's lock) must find it still unroutable, not live.
 */
async function activateProvisioned(tx: Queryable, id: string, version: number): Promise<void> {
  const { rowCount } = await tx.query(
    `UPDATE tenantry.tenants SET status = 'active', schema_version = $2, updated_at = now()
      WHERE id = $1 AND status = 'provisioning' AND purge_requested_at IS NULL`,
    [id, version],
  );
  if (rowCount === 0) {
    throw new TenantryError('conflict', 'the tenant was deleted or changed while it was provisioned');
  }
}

async function lockNamespace(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_NAMESPACE, LockKey.TENANT_NAMESPACE]);
}

async function insertHosts(tx: Queryable, tenantId: string, hosts: readonly string[]): Promise<void> {
  if (hosts.length === 0) return;
  await tx.query('INSERT INTO tenantry.tenant_hosts (host, tenant_id) SELECT unnest($1::text[]), $2::uuid', [
    hosts,
    tenantId,
  ]);
}

function checkName(raw: string): string {
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

export interface TenantConfigView {
  readonly plan: string | null;
  /** What is set on the tenant itself. */
  readonly overrides: TenantConfig;
  /** Its plan's values with its overrides on top. */
  readonly effective: EffectiveTenantConfig;
}

function configView(tenant: Tenant): TenantConfigView {
  return { plan: tenant.effective.plan ?? null, overrides: tenant.config, effective: tenant.effective };
}

const CONFIG_SECTIONS = ['plan', 'features', 'limits', 'branding', 'settings'];

/** `limits.requestsPerSecond` -> ['limits', 'requestsPerSecond'], refusing unknown sections. */
/** Names that reach an object's prototype instead of a key of its own when assigned. */
const OBJECT_MEMBERS = new Set(['__proto__', 'constructor', 'prototype']);

export function parseConfigPath(path: string): string[] {
  const parts = typeof path === 'string' ? path.split('.') : [];
  const [section] = parts;
  const valid =
    parts.length > 0 &&
    parts.every((part) => /^[A-Za-z0-9_-]{1,100}$/.test(part) && !OBJECT_MEMBERS.has(part)) &&
    section !== undefined &&
    CONFIG_SECTIONS.includes(section) &&
    (section === 'plan' || section === 'features'
      ? parts.length === 1
      : parts.length >= 2 || section === 'settings');
  if (!valid) {
    throw new TenantryError(
      'validation_failed',
      `"${clip(String(path))}" is not a config path: plan, features, limits.<name>, branding.<name> or settings[.<key>...]`,
      { field: 'path' },
    );
  }
  return parts;
}

function withPath(
  target: Record<string, unknown>,
  path: readonly string[],
  value: unknown,
): Record<string, unknown> {
  const [head, ...rest] = path as [string, ...string[]];
  const copy = { ...target };
  if (rest.length === 0) {
    if (value === undefined) delete copy[head];
    else copy[head] = value;
    return copy;
  }
  const child = copy[head];
  const nested = withPath(
    child && typeof child === 'object' && !Array.isArray(child) ? (child as Record<string, unknown>) : {},
    rest,
    value,
  );
  if (Object.keys(nested).length === 0) delete copy[head];
  else copy[head] = nested;
  return copy;
}

function clip(value: string): string {
  const text = String(value);
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

/** Races that pass the checks still hit the unique indexes: answer them as the checks would have. */
function translateConstraintError(error: unknown): unknown {
  if (!isSqlState(error, 'UNIQUE_VIOLATION')) return error;
  const constraint = constraintOf(error);
  if (constraint === 'tenants_slug_key')
    return new TenantryError('conflict', 'slug is already taken', { field: 'slug' });
  if (constraint === 'tenant_hosts_pkey')
    return new TenantryError('conflict', 'host belongs to another tenant', { field: 'hosts' });
  return new TenantryError('conflict', 'the change conflicts with existing data', { cause: error });
}

export type { CreateTenantInput, TenantConfig };
