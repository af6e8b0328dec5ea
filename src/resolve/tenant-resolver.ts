import type { ApiKeyVerifier, KeyScope } from '../auth/api-key-verifier.js';
import type { SessionStore, VerifiedSession } from '../auth/session-store.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { isUuid } from '../tenants/slug.js';
import type { Tenant } from '../tenants/tenant.js';
import { isBeingBuilt } from '../tenants/tenant.js';
import type { TenantStore } from '../tenants/tenant-store.js';
import type { TenantCache } from './tenant-cache.js';

/** The credentials of a request that can name a tenant. */
export interface TenantCredentials {
  /** The normalised request host (see `hostFromHeader`). */
  readonly host?: string | undefined;
  readonly apiKey?: string | undefined;
  /** A session token (Authorization: Bearer or the session cookie). */
  readonly session?: string | undefined;
  /**
   * The session cookie, when the request sends a different Bearer token too. The Bearer session
   * is the one used; this one only must not name another tenant (an ended one is ignored).
   */
  readonly otherSession?: string | undefined;
}

/** How the tenant of a request was established. */
export type CredentialSource = 'host' | 'apiKey' | 'session';

export interface Resolution {
  readonly tenant: Tenant;
  readonly via: readonly CredentialSource[];
  /** The key id when an API key authenticated the request. */
  readonly keyId?: string;
  /** What that key may do. */
  readonly keyScope?: KeyScope;
  /** The session when a user's session token authenticated the request. */
  readonly session?: VerifiedSession;
}

interface Claim {
  readonly source: CredentialSource;
  readonly tenant: Tenant;
}

export interface ResolverOptions {
  readonly baseDomain: string;
  readonly isReservedSlug: (label: string) => boolean;
  /** Called for every refused disagreement between credentials, before the error is thrown. */
  readonly onCrossTenant: (
    details: { claims: readonly { source: CredentialSource; tenantId: string }[] },
    context: ActionContext,
  ) => Promise<void>;
}

/**
 * Finds the tenant of a request from every credential it carries. All that are present must
 * agree; a key never loses to a host or the other way round.
 */
/**
 * The credential sources of a cached resolution, by bit (1 host, 2 API key, 4 session), made
 * once: a resolution's `via` is read-only, and the cached path runs on every request.
 */
const VIA: readonly (readonly CredentialSource[])[] = Array.from({ length: 8 }, (_, bits) =>
  Object.freeze(
    (['host', 'apiKey', 'session'] as const).filter((_source, index) => (bits & (1 << index)) !== 0),
  ),
);

export class TenantResolver {
  readonly #store: TenantStore;
  readonly #keys: ApiKeyVerifier;
  readonly #sessions: SessionStore;
  readonly #cache: TenantCache;
  readonly #options: ResolverOptions;

  constructor(
    registry: TenantStore,
    credentials: { keys: ApiKeyVerifier; sessions: SessionStore },
    cache: TenantCache,
    options: ResolverOptions,
  ) {
    this.#store = registry;
    this.#keys = credentials.keys;
    this.#sessions = credentials.sessions;
    this.#cache = cache;
    this.#options = options;
  }

  async resolve(credentials: TenantCredentials, context: ActionContext): Promise<Resolution> {
    const [hostClaim, keyClaim, sessionClaim, otherSessionClaim] = await Promise.all([
      credentials.host === undefined ? undefined : this.#claimFromHost(credentials.host),
      credentials.apiKey === undefined ? undefined : this.#claimFromKey(credentials.apiKey),
      credentials.session === undefined ? undefined : this.#claimFromSession(credentials.session),
      credentials.otherSession === undefined ? undefined : this.#claimFromSession(credentials.otherSession),
    ]);
    if (credentials.apiKey !== undefined && !keyClaim) {
      throw new TenantryError('invalid_credentials', 'the API key is not valid');
    }
    if (credentials.session !== undefined && !sessionClaim) {
      throw new TenantryError('invalid_credentials', 'the session is not valid or has ended: log in again');
    }
    if (sessionClaim === 'no-tenant') {
      throw new TenantryError('forbidden', 'this user belongs to no tenant: it has no tenant routes');
    }
    // A tenant host that names no live tenant is refused even with a valid key: the request was
    // meant for a tenant that is not there.
    if (hostClaim === 'unknown')
      throw new TenantryError('tenant_not_found', 'no tenant is served at this host');
    const claims = [
      hostClaim,
      keyClaim,
      sessionClaim,
      otherSessionClaim === 'no-tenant' ? undefined : otherSessionClaim,
    ].filter((claim): claim is Claim => claim !== undefined);
    if (new Set(claims.map((claim) => claim.tenant.id)).size > 1) {
      const actor =
        sessionClaim !== undefined
          ? { kind: 'user' as const, id: sessionClaim.session.userId }
          : { kind: 'api-key' as const, id: keyClaim?.keyId ?? 'unknown' };
      await this.#options.onCrossTenant(
        { claims: claims.map((claim) => ({ source: claim.source, tenantId: claim.tenant.id })) },
        { ...context, actor },
      );
      throw new TenantryError('cross_tenant', 'the credentials of this request belong to different tenants');
    }
    const claim = keyClaim ?? sessionClaim ?? hostClaim;
    if (!claim) throw new TenantryError('tenant_required', 'send an X-API-Key or call a tenant host');
    const tenant = claim.tenant;
    if (tenant.status === 'inactive') throw new TenantryError('tenant_inactive', 'this tenant is inactive');
    if (tenant.status !== 'active')
      throw new TenantryError('tenant_not_found', 'no tenant is served at this host');
    return {
      tenant,
      via: claims.map((each) => each.source),
      ...(keyClaim ? { keyId: keyClaim.keyId, keyScope: keyClaim.scope } : {}),
      ...(sessionClaim ? { session: sessionClaim.session } : {}),
    };
  }

  /**
   * The steady-state path: every credential answered from the caches, synchronously, and all of
   * them agreeing on one active tenant. Anything else (a miss, a disagreement, an inactive
   * tenant) returns undefined and the caller runs `resolve`, which decides, audits and refuses.
   */
  resolveCached(credentials: TenantCredentials): Resolution | undefined {
    // Two sessions in one request are rare: the full check decides.
    if (credentials.otherSession !== undefined) return undefined;
    let keyTenant: Tenant | undefined;
    let keyId: string | undefined;
    let keyScope: KeyScope | undefined;
    if (credentials.apiKey !== undefined) {
      const verified = this.#keys.verifyCached(credentials.apiKey);
      if (!verified) return undefined;
      keyTenant = this.#cache.tenant(verified.tenantId);
      if (keyTenant?.status !== 'active') return undefined;
      keyId = verified.keyId;
      keyScope = verified.scope;
    }
    let session: VerifiedSession | undefined;
    let sessionTenant: Tenant | undefined;
    if (credentials.session !== undefined) {
      session = this.#sessions.verifyCached(credentials.session);
      if (!session || session.tenantId === null) return undefined;
      sessionTenant = this.#cache.tenant(session.tenantId);
      if (sessionTenant?.status !== 'active') return undefined;
      if (keyTenant && keyTenant.id !== sessionTenant.id) return undefined;
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
    if (hostTenant && sessionTenant && hostTenant.id !== sessionTenant.id) return undefined;
    const tenant = keyTenant ?? sessionTenant ?? hostTenant;
    if (!tenant) return undefined;
    const via = VIA[(hostTenant ? 1 : 0) | (keyTenant ? 2 : 0) | (sessionTenant ? 4 : 0)]!;
    if (session)
      return keyId ? { tenant, via, keyId, keyScope: keyScope!, session } : { tenant, via, session };
    return keyId ? { tenant, via, keyId, keyScope: keyScope! } : { tenant, via };
  }

  /** A tenant by its id or its live slug, from the cache when it is there (`withTenant`, jobs). */
  async tenantByIdOrSlug(idOrSlug: string): Promise<Tenant | undefined> {
    if (typeof idOrSlug !== 'string' || idOrSlug.length === 0 || idOrSlug.length > 100) return undefined;
    const lower = idOrSlug.toLowerCase();
    if (isUuid(lower)) return this.tenantById(lower);
    const cached = this.#cache.slug(idOrSlug);
    if (cached === null) return undefined;
    if (cached !== undefined) return this.tenantById(cached);
    const generation = this.#cache.generation;
    const tenant = await this.#store.findBySlug(idOrSlug);
    this.#cache.setSlug(idOrSlug, tenant?.id, generation);
    return tenant;
  }

  async tenantById(id: string): Promise<Tenant | undefined> {
    const cached = this.#cache.tenant(id);
    if (cached) return cached;
    const generation = this.#cache.generation;
    const tenant = await this.#store.findById(id);
    if (tenant) this.#cache.setTenant(tenant, generation);
    return tenant;
  }

  async #claimFromKey(apiKey: string): Promise<(Claim & { keyId: string; scope: KeyScope }) | undefined> {
    const verified = await this.#keys.verify(apiKey);
    if (!verified) return undefined;
    const tenant = await this.tenantById(verified.tenantId);
    // A key authenticates only for an active tenant: for any other, it is simply not valid.
    if (tenant?.status !== 'active') return undefined;
    return { source: 'apiKey', tenant, keyId: verified.keyId, scope: verified.scope };
  }

  async #claimFromSession(
    token: string,
  ): Promise<(Claim & { session: VerifiedSession }) | 'no-tenant' | undefined> {
    const session = await this.#sessions.verify(token);
    if (!session) return undefined;
    if (session.tenantId === null) return 'no-tenant';
    const tenant = await this.tenantById(session.tenantId);
    if (tenant?.status !== 'active') return undefined;
    return { source: 'session', tenant, session };
  }

  /** undefined: the host names no tenant (the service's own name); 'unknown': it names one that is not there. */
  async #claimFromHost(host: string): Promise<Claim | 'unknown' | undefined> {
    const tenantId = await this.#tenantIdForHost(host);
    if (tenantId === undefined) return this.#slugOfHost(host) === undefined ? undefined : 'unknown';
    const tenant = await this.tenantById(tenantId);
    if (!tenant || tenant.status === 'deleted' || isBeingBuilt(tenant.status)) return 'unknown';
    return { source: 'host', tenant };
  }

  async #tenantIdForHost(host: string): Promise<string | undefined> {
    const cached = this.#cache.host(host);
    if (cached !== undefined) return cached ?? (await this.#tenantIdForSlugHost(host));
    const generation = this.#cache.generation;
    const registered = await this.#store.tenantIdForHost(host);
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
    const tenant = await this.#store.findBySlug(slug);
    this.#cache.setSlug(slug, tenant?.id, generation);
    return tenant?.id;
  }
}
