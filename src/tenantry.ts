import type { TenantryConfig } from './config/config-schema.js';
import type { ConfigReloadReport } from './engine/config-reloader.js';
import { Engine, type OpenTenantryOptions } from './engine/engine.js';
import { TenantryError } from './errors.js';
import type { TenantDb } from './isolation/tenant-db.js';
import type { StaticSyncReport } from './lifecycle/static-tenant-sync.js';
import { type Catalogue, catalogue } from './operations/catalogue.js';
import type { InputOf, Operation, OutputOf } from './operations/operation.js';
import { LIBRARY_CONTEXT, runOperation } from './operations/run-operation.js';
import type { ActionContext } from './runtime/actor.js';
import type { ScopedCache, TenantCache } from './runtime/scoped-cache.js';
import type { Tenant } from './tenants/tenant.js';
import { isBeingBuilt } from './tenants/tenant.js';

export type { ConfigReloadReport, OpenTenantryOptions };

/** Options of a typed call. */
export interface CallOptions {
  /** Who the audit trail names (default `system:library`). */
  readonly context?: ActionContext;
}

type Noun<N> = N extends `${infer Head}.${string}` ? Head : never;

/** The typed calls of one noun: `tenantry.tenants.create(input)`, from the catalogue. */
export type NounCalls<N extends string> = {
  readonly [O in Catalogue[number] as O['name'] extends `${N}.${infer Verb}` ? Verb : never]: (
    input: InputOf<O>,
    options?: CallOptions,
  ) => Promise<OutputOf<O>>;
};

/** Every operation of the catalogue as a typed call, grouped by noun. */
export type OperationCalls = { readonly [N in Noun<Catalogue[number]['name']>]: NounCalls<N> };

const engines = new WeakMap<Tenantry, Engine>();

/** The engine behind a Tenantry: for the front ends of this package, never part of the public API. */
export function engineOf(tenantry: Tenantry): Engine {
  const engine = engines.get(tenantry);
  if (!engine) throw new Error('not an open Tenantry');
  return engine;
}

/**
 * Tenantry in a process: one per process, opened on the configuration. Every operation of the
 * engine is a typed call grouped by noun (the same operations the admin API and the CLI run,
 * with the same checks, audit entries and change announcements), plus the tenant-scoped database
 * handle for jobs and scripts.
 *
 * @example
 * const tenantry = await openTenantry({ config: loadConfig() });
 * const { tenant, apiKey } = await tenantry.tenants.create({ name: 'Acme', slug: 'acme' });
 * await tenantry.withTenant('acme', (db) => db.query('UPDATE tasks SET done = true WHERE due < now()'));
 */
export class Tenantry {
  readonly tenants: OperationCalls['tenants'];
  readonly tenantConfig: OperationCalls['tenantConfig'];
  readonly hosts: OperationCalls['hosts'];
  readonly keys: OperationCalls['keys'];
  readonly audit: OperationCalls['audit'];
  readonly users: OperationCalls['users'];
  /** Global admins: users of no tenant. */
  readonly admins: OperationCalls['admins'];
  readonly roles: OperationCalls['roles'];
  readonly groups: OperationCalls['groups'];
  readonly clients: OperationCalls['clients'];
  readonly servers: OperationCalls['servers'];
  readonly migrations: OperationCalls['migrations'];
  /** Checks of the deployment (`tenantry doctor`). */
  readonly doctor: OperationCalls['doctor'];
  /** The tenant-scoped cache of application code (`request.cache`, `cache.forTenant`). */
  readonly cache: ScopedCache;

  private constructor(engine: Engine) {
    engines.set(this, engine);
    this.cache = engine.cache;
    const calls = callsOf(engine) as unknown as OperationCalls;
    this.tenants = calls.tenants;
    this.tenantConfig = calls.tenantConfig;
    this.hosts = calls.hosts;
    this.keys = calls.keys;
    this.audit = calls.audit;
    this.users = calls.users;
    this.admins = calls.admins;
    this.roles = calls.roles;
    this.groups = calls.groups;
    this.clients = calls.clients;
    this.servers = calls.servers;
    this.migrations = calls.migrations;
    this.doctor = calls.doctor;
  }

  static async open(options: OpenTenantryOptions): Promise<Tenantry> {
    return new Tenantry(await Engine.open(options));
  }

  /** The configuration in force; a reload replaces it (read it per use, never keep it). */
  get config(): TenantryConfig {
    return engineOf(this).config;
  }

  /**
   * Runs `fn` with a database handle bound to the tenant (by id or slug), for jobs and scripts
   * outside HTTP, and the tenant with its cache. The tenant must exist and be active.
   *
   * @example
   * await tenantry.withTenant(tenantId, (db) => db.query('UPDATE tasks SET done = true WHERE due < now()'));
   * await tenantry.withTenant('acme', async (db, { cache }) => cache.del('open-tasks'));
   */
  async withTenant<T>(
    idOrSlug: string,
    fn: (db: TenantDb, scope: { readonly tenant: Tenant; readonly cache: TenantCache }) => Promise<T>,
  ): Promise<T> {
    const engine = engineOf(this);
    const tenant = await engine.resolver.tenantByIdOrSlug(idOrSlug);
    if (!tenant || tenant.status === 'deleted' || isBeingBuilt(tenant.status)) {
      throw new TenantryError('tenant_not_found', 'no such tenant');
    }
    if (tenant.status !== 'active') throw new TenantryError('tenant_inactive', 'this tenant is inactive');
    await engine.schemas.loadView(tenant);
    return fn(engine.data.forTenant(tenant), { tenant, cache: engine.cache.forTenant(tenant) });
  }

  /**
   * Makes the tenants the config file declares (`tenants:`) exist as declared; `serve` runs it at
   * start. The keys of created tenants are in the report, shown once.
   *
   * @example
   * const report = await tenantry.syncStaticTenants();
   * for (const { slug, apiKey } of report.created) console.error(slug, apiKey.key);
   */
  syncStaticTenants(): Promise<StaticSyncReport> {
    return engineOf(this).reloader.syncStaticTenants();
  }

  /**
   * Applies a config file read again without a restart (plans, settings schema, tenancy defaults,
   * reserved slugs, static tenants); other changed keys take effect at restart.
   *
   * @example
   * process.on('SIGHUP', () => tenantry.reloadConfig(loadConfig()).catch((error) => log.error(error)));
   */
  reloadConfig(next: TenantryConfig): Promise<ConfigReloadReport> {
    return engineOf(this).reloader.reload(next);
  }

  /** Runs any operation of the catalogue (the typed calls above are this). */
  run<O extends Operation>(operation: O, input: InputOf<O>, options: CallOptions = {}): Promise<OutputOf<O>> {
    return runOperation(engineOf(this), operation, input, {
      kind: 'operator',
      context: options.context ?? LIBRARY_CONTEXT,
    });
  }

  async close(): Promise<void> {
    await engineOf(this).close();
  }
}

function callsOf(engine: Engine): Record<string, Record<string, unknown>> {
  const calls: Record<string, Record<string, unknown>> = {};
  for (const operation of catalogue) {
    const [noun, verb] = operation.name.split('.') as [string, string];
    calls[noun] ??= {};
    calls[noun][verb] = (input: unknown, options: CallOptions = {}) =>
      runOperation(engine, operation as Operation, input, {
        kind: 'operator',
        context: options.context ?? LIBRARY_CONTEXT,
      });
  }
  for (const group of Object.values(calls)) Object.freeze(group);
  return calls;
}

export const openTenantry = (options: OpenTenantryOptions): Promise<Tenantry> => Tenantry.open(options);
