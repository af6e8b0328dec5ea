import type { ApiKeyVerifier } from '../auth/api-key-verifier.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import type { Tenant } from '../tenants/tenant.js';
import type { TenantRegistry } from '../tenants/tenant-registry.js';
import type { TenantCache } from './tenant-cache.js';

/** The credentials of a request that can name a tenant. */
export interface TenantCredentials {
  /** The normalised request host (see `hostFromHeader`). */
  readonly host?: string | undefined;
  readonly apiKey?: string | undefined;
}

/** How the tenant of a request was established. */
export interface Resolution {
  readonly tenant: Tenant;
  readonly via: readonly ('host' | 'apiKey')[];
  /** The key id when an API key authenticated the request. */
  readonly keyId?: string;
}

interface Claim {
  readonly source: 'host' | 'apiKey';
  readonly tenant: Tenant;
}

export interface ResolverOptions {
  readonly baseDomain: string;
  readonly isReservedSlug: (label: string) => boolean;
  /** Called for every refused disagreement between credentials, before the error is thrown. */
  readonly onCrossTenant: (
    details: { host: Tenant; key: Tenant; keyId: string },
    context: ActionContext,
  ) => Promise<void>;
}

/**
 * Finds the tenant of a request from every credential it carries. All that are present must
 * agree; a key never loses to a host or the other way round.
 */
export class TenantResolver {
  readonly #registry: TenantRegistry;
  readonly #keys: ApiKeyVerifier;
  readonly #cache: TenantCache;
  readonly #options: ResolverOptions;

  constructor(registry: TenantRegistry, keys: ApiKeyVerifier, cache: TenantCache, options: ResolverOptions) {
    this.#registry = registry;
    this.#keys = keys;
    this.#cache = cache;
    this.#options = options;
  }

  async resolve(credentials: TenantCredentials, context: ActionContext): Promise<Resolution> {
    const [hostClaim, keyClaim] = await Promise.all([
      credentials.host === undefined ? undefined : this.#claimFromHost(credentials.host),
      credentials.apiKey === undefined ? undefined : this.#claimFromKey(credentials.apiKey),
    ]);
    if (credentials.apiKey !== undefined && !keyClaim) {
      throw new TenantryError('invalid_credentials', 'the API key is not valid');
    }
    // A tenant host that names no live tenant is refused even with a valid key: the request was
    // meant for a tenant that is not there.
    if (hostClaim === 'unknown')
      throw new TenantryError('tenant_not_found', 'no tenant is served at this host');
    if (hostClaim && keyClaim && hostClaim.tenant.id !== keyClaim.tenant.id) {
      await this.#options.onCrossTenant(
        { host: hostClaim.tenant, key: keyClaim.tenant, keyId: keyClaim.keyId },
        { ...context, actor: { kind: 'api-key', id: keyClaim.keyId } },
      );
      throw new TenantryError('cross_tenant', 'the request host and the API key belong to different tenants');
    }
    const claim = keyClaim ?? hostClaim;
    if (!claim) throw new TenantryError('tenant_required', 'send an X-API-Key or call a tenant host');
    const tenant = claim.tenant;
    if (tenant.status === 'inactive') throw new TenantryError('tenant_inactive', 'this tenant is inactive');
    if (tenant.status !== 'active')
      throw new TenantryError('tenant_not_found', 'no tenant is served at this host');
    const via: ('host' | 'apiKey')[] = [];
    if (hostClaim) via.push('host');
    if (keyClaim) via.push('apiKey');
    return keyClaim ? { tenant, via, keyId: keyClaim.keyId } : { tenant, via };
  }

  /**
   * The steady-state path: every credential answered from the caches, synchronously, and all of
   * them agreeing on one active tenant. Anything else (a miss, a disagreement, an inactive
   * tenant) returns undefined and the caller runs `resolve`, which decides, audits and refuses.
   */
  resolveCached(credentials: TenantCredentials): Resolution | undefined {
    let keyTenant: Tenant | undefined;
    let keyId: string | undefined;
    if (credentials.apiKey !== undefined) {
      const verified = this.#keys.verifyCached(credentials.apiKey);
      if (!verified) return undefined;
      keyTenant = this.#cache.tenant(verified.tenantId);
      if (keyTenant?.status !== 'active') return undefined;
      keyId = verified.keyId;
    }
    let hostTenant: Tenant | undefined;
    if (credentials.host !== undefined) {
      const registered = this.#cache.host(credentials.host);
      if (registered === undefined) return undefined;
      if (registered === null) {
        const slug = this.#slugOfHost(credentials.host);
        if (slug !== undefined) {
          const bySlug = this.#cache.slug(slug);
          if (bySlug === undefined || bySlug === null) return undefined;
          hostTenant = this.#cache.tenant(bySlug);
          if (!hostTenant) return undefined;
        }
      } else {
        hostTenant = this.#cache.tenant(registered);
        if (!hostTenant) return undefined;
      }
      if (hostTenant && hostTenant.status !== 'active') return undefined;
    }
    if (hostTenant && keyTenant && hostTenant.id !== keyTenant.id) return undefined;
    const tenant = keyTenant ?? hostTenant;
    if (!tenant) return undefined;
    const via: ('host' | 'apiKey')[] = [];
    if (hostTenant) via.push('host');
    if (keyTenant) via.push('apiKey');
    return keyId ? { tenant, via, keyId } : { tenant, via };
  }

  async tenantById(id: string): Promise<Tenant | undefined> {
    const cached = this.#cache.tenant(id);
    if (cached) return cached;
    const generation = this.#cache.generation;
    const tenant = await this.#registry.findById(id);
    if (tenant) this.#cache.setTenant(tenant, generation);
    return tenant;
  }

  async #claimFromKey(apiKey: string): Promise<(Claim & { keyId: string }) | undefined> {
    const verified = await this.#keys.verify(apiKey);
    if (!verified) return undefined;
    const tenant = await this.tenantById(verified.tenantId);
    // A key authenticates only for an active tenant: for any other, it is simply not valid.
    if (tenant?.status !== 'active') return undefined;
    return { source: 'apiKey', tenant, keyId: verified.keyId };
  }

  /** undefined: the host names no tenant (the service's own name); 'unknown': it names one that is not there. */
  async #claimFromHost(host: string): Promise<Claim | 'unknown' | undefined> {
    const tenantId = await this.#tenantIdForHost(host);
    if (tenantId === undefined) return this.#slugOfHost(host) === undefined ? undefined : 'unknown';
    const tenant = await this.tenantById(tenantId);
    if (!tenant || tenant.status === 'deleted' || tenant.status === 'provisioning') return 'unknown';
    return { source: 'host', tenant };
  }

  async #tenantIdForHost(host: string): Promise<string | undefined> {
    const cached = this.#cache.host(host);
    if (cached !== undefined) return cached ?? (await this.#tenantIdForSlugHost(host));
    const generation = this.#cache.generation;
    const registered = await this.#registry.tenantIdForHost(host);
    this.#cache.setHost(host, registered, generation);
    return registered ?? (await this.#tenantIdForSlugHost(host));
  }

  /** The slug a `<slug>.<baseDomain>` host names, unless it is one of the service's reserved names. */
  #slugOfHost(host: string): string | undefined {
    const suffix = `.${this.#options.baseDomain}`;
    if (!host.endsWith(suffix)) return undefined;
    const label = host.slice(0, -suffix.length);
    if (label.includes('.') || this.#options.isReservedSlug(label)) return undefined;
    return label;
  }

  async #tenantIdForSlugHost(host: string): Promise<string | undefined> {
    const slug = this.#slugOfHost(host);
    if (slug === undefined) return undefined;
    const cached = this.#cache.slug(slug);
    if (cached !== undefined) return cached ?? undefined;
    const generation = this.#cache.generation;
    const tenant = await this.#registry.findBySlug(slug);
    this.#cache.setSlug(slug, tenant?.id, generation);
    return tenant?.id;
  }
}
