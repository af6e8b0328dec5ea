import type { ConnectionPool, Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { type AuditIntent, auditedChange, type ChangeRecord } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { validate } from '../validation.js';
import { normalizeHost } from './host.js';
import { assertNotManaged, changedFields } from './managed-tenants.js';
import type { Tenant } from './tenant.js';
import { TenantConfigSchema } from './tenant.js';
import {
  configChanges,
  configView,
  parseConfigPath,
  type TenantConfigView,
  withPath,
} from './tenant-config-paths.js';
import {
  HostInputSchema,
  type ReplaceTenantInput,
  ReplaceTenantInputSchema,
  type UpdateTenantInput,
  UpdateTenantInputSchema,
} from './tenant-input.js';
import {
  assertHostsFree,
  assertSlugFree,
  checkHosts,
  checkName,
  checkSlug,
  checkTenantConfig,
  insertHosts,
  lockNamespace,
  type TenancyRules,
  translateConstraintError,
} from './tenant-rules.js';
import { clip, type TenantStore } from './tenant-store.js';

export interface TenantEditorDeps {
  readonly owner: ConnectionPool;
  readonly bus: ChangeBus;
  readonly store: TenantStore;
  readonly rules: () => TenancyRules;
}

/** A change of config values by path: `set` and `unset` apply together, validated as a whole. */
export interface ConfigChange {
  readonly set?: Readonly<Record<string, unknown>> | undefined;
  readonly unset?: readonly string[] | undefined;
}

/**
 * Changes a live tenant's name, slug, hosts and configuration. Every change is one audited
 * transaction that announces the tenant changed; fields the config file declares are refused.
 */
export class TenantEditor {
  readonly #deps: TenantEditorDeps;

  constructor(deps: TenantEditorDeps) {
    this.#deps = deps;
  }

  /** PATCH semantics: only the given fields change; `config` is replaced as a whole. */
  update(idOrSlug: string, input: UpdateTenantInput, context: ActionContext): Promise<Tenant> {
    return this.#apply(idOrSlug, validate(UpdateTenantInputSchema, input), context, 'tenant.update');
  }

  /** PUT semantics: name, slug, hosts and config are all given and replace what was there. */
  replace(idOrSlug: string, input: ReplaceTenantInput, context: ActionContext): Promise<Tenant> {
    return this.#apply(idOrSlug, validate(ReplaceTenantInputSchema, input), context, 'tenant.replace');
  }

  async addHost(idOrSlug: string, input: { host: string }, context: ActionContext): Promise<Tenant> {
    const { host: raw } = validate(HostInputSchema, input);
    const rules = this.#deps.rules();
    const host = checkHosts([raw], rules)[0] as string;
    const current = await this.#deps.store.get(idOrSlug);
    return this.#change(
      context,
      { action: 'tenant.host.add', target: host, tenantId: current.id },
      async (tx, record) => {
        await lockNamespace(tx);
        const locked = await this.#deps.store.lockLive(tx, current.id, idOrSlug);
        if (locked.hosts.includes(host)) return locked;
        await assertNotManaged(tx, locked, ['hosts'], context);
        await assertHostsFree(tx, [host], locked, rules);
        await insertHosts(tx, current.id, [host]);
        record.announce({ kind: 'tenant', tenantId: current.id });
        return this.#deps.store.load(tx, current.id);
      },
    );
  }

  async removeHost(idOrSlug: string, rawHost: string, context: ActionContext): Promise<Tenant> {
    const checked = normalizeHost(rawHost);
    const current = await this.#deps.store.get(idOrSlug);
    const host = checked.ok ? checked.host : String(rawHost);
    const audit = { action: 'tenant.host.remove', target: clip(host), tenantId: current.id };
    return this.#change(context, audit, async (tx, record) => {
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
      record.announce({ kind: 'tenant', tenantId: current.id });
      return this.#deps.store.load(tx, current.id);
    });
  }

  /** The tenant's configuration: its plan, what it overrides, and the effective result. */
  async configOf(idOrSlug: string): Promise<TenantConfigView> {
    return configView(await this.#deps.store.get(idOrSlug));
  }

  /**
   * Sets and unsets values by path (`plan`, `features`, `limits.requestsPerSecond`,
   * `branding.primaryColor`, `settings.<key>...`), all in one change; unsetting a value makes the
   * plan's apply again. The result is validated as a whole before anything is written.
   */
  async changeConfig(
    idOrSlug: string,
    change: ConfigChange,
    context: ActionContext,
  ): Promise<TenantConfigView> {
    const current = await this.#deps.store.get(idOrSlug);
    const audit = { action: 'tenant.config', target: current.slug, tenantId: current.id };
    const tenant = await this.#change(context, audit, async (tx, record) => {
      const locked = await this.#deps.store.lockLive(tx, current.id, idOrSlug);
      let next: Record<string, unknown> = structuredClone(locked.config) as Record<string, unknown>;
      for (const path of change.unset ?? []) next = withPath(next, parseConfigPath(path), undefined);
      for (const [path, value] of Object.entries(change.set ?? {})) {
        next = withPath(next, parseConfigPath(path), value);
      }
      const checked = checkTenantConfig(validate(TenantConfigSchema, next), this.#deps.rules());
      await assertNotManaged(tx, locked, changedFields(locked, { config: checked }), context);
      record.detail({ changes: configChanges(locked.config, checked) });
      await tx.query('UPDATE tenantry.tenants SET config = $2::jsonb, updated_at = now() WHERE id = $1', [
        current.id,
        JSON.stringify(checked),
      ]);
      record.announce({ kind: 'tenant', tenantId: current.id });
      return this.#deps.store.load(tx, current.id);
    });
    return configView(tenant);
  }

  async #apply(
    idOrSlug: string,
    data: UpdateTenantInput,
    context: ActionContext,
    action: string,
  ): Promise<Tenant> {
    const current = await this.#deps.store.get(idOrSlug);
    if (data.isolation !== undefined && data.isolation !== current.isolation) {
      throw new TenantryError(
        'conflict',
        'isolation cannot be changed by an update; move the tenant instead',
        {
          field: 'isolation',
        },
      );
    }
    const rules = this.#deps.rules();
    const name = data.name === undefined ? undefined : checkName(data.name);
    const config = data.config === undefined ? undefined : checkTenantConfig(data.config, rules);
    const slug = data.slug === undefined ? undefined : checkSlug(data.slug, rules);
    const hosts = data.hosts === undefined ? undefined : checkHosts(data.hosts, rules);
    const audit = { action, target: current.slug, tenantId: current.id };
    return this.#change(context, audit, async (tx, record) => {
      await lockNamespace(tx);
      const locked = await this.#deps.store.lockLive(tx, current.id, idOrSlug);
      await assertNotManaged(tx, locked, changedFields(locked, { name, slug, hosts, config }), context);
      if (config !== undefined) record.detail({ changes: configChanges(locked.config, config) });
      const newSlug = slug ?? locked.slug;
      if (slug !== undefined && slug !== locked.slug) await assertSlugFree(tx, slug, current.id, rules);
      if (hosts !== undefined) {
        await tx.query('DELETE FROM tenantry.tenant_hosts WHERE tenant_id = $1', [current.id]);
        await assertHostsFree(tx, hosts, { id: current.id, slug: newSlug }, rules);
        await insertHosts(tx, current.id, hosts);
      }
      await tx.query(
        `UPDATE tenantry.tenants
            SET name = coalesce($2, name), slug = $3, config = coalesce($4::jsonb, config), updated_at = now()
          WHERE id = $1`,
        [current.id, name ?? null, newSlug, config === undefined ? null : JSON.stringify(config)],
      );
      record.announce({ kind: 'tenant', tenantId: current.id });
      return this.#deps.store.load(tx, current.id);
    });
  }

  #change<T>(
    context: ActionContext,
    audit: AuditIntent,
    work: (tx: Queryable, record: ChangeRecord) => Promise<T>,
  ): Promise<T> {
    return auditedChange(
      { bus: this.#deps.bus, translate: translateConstraintError },
      this.#deps.owner,
      context,
      audit,
      work,
    );
  }
}
