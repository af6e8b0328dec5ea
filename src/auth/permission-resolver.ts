import type { AccessControl } from './access-control.js';
import type { KeyScope } from './api-key-verifier.js';
import { freezeSet, intersection, type PermissionCatalogue, type PermissionSet } from './permissions.js';

/** How a request was authenticated, as far as what it may do depends on it. */
export interface Credentials {
  readonly tenant: { readonly id: string };
  /** What the API key that authenticated it may do. */
  readonly keyScope?: KeyScope | undefined;
  /** The session of the user who sent it. */
  readonly session?: { readonly userId: string } | undefined;
}

const NO_PERMISSIONS: PermissionSet = freezeSet([]);

/**
 * What the caller of a request may do in its tenant. A user's session holds its roles'
 * permissions; an API key its scope (every tenant permission when unscoped), never more than the
 * user who made it holds now; a request with both holds what both allow; a caller known only by
 * its host, nothing.
 */
export class PermissionResolver {
  readonly #access: AccessControl;
  readonly #catalogue: PermissionCatalogue;
  readonly #keyPermissions = new WeakMap<
    KeyScope,
    { creator: PermissionSet | undefined; held: PermissionSet }
  >();

  constructor(access: AccessControl, catalogue: PermissionCatalogue) {
    this.#access = access;
    this.#catalogue = catalogue;
  }

  /** From memory alone; undefined means "ask `of`". */
  cached(credentials: Credentials): PermissionSet | undefined {
    const tenantId = credentials.tenant.id;
    let held: PermissionSet | undefined;
    if (credentials.session) {
      held = this.#access.userPermissionsCached(tenantId, credentials.session.userId);
      if (!held) return undefined;
    }
    if (credentials.keyScope) {
      const scope = credentials.keyScope;
      const creator =
        scope.createdBy === null ? undefined : this.#access.userPermissionsCached(tenantId, scope.createdBy);
      if (scope.createdBy !== null && !creator) return undefined;
      const key = this.#ofKey(scope, creator);
      held = held ? intersection(held, key) : key;
    }
    return held ?? NO_PERMISSIONS;
  }

  async of(credentials: Credentials): Promise<PermissionSet> {
    const cached = this.cached(credentials);
    if (cached) return cached;
    const tenantId = credentials.tenant.id;
    const [user, creator] = await Promise.all([
      credentials.session ? this.#access.userPermissions(tenantId, credentials.session.userId) : undefined,
      credentials.keyScope?.createdBy
        ? this.#access.userPermissions(tenantId, credentials.keyScope.createdBy)
        : undefined,
    ]);
    let held = user;
    if (credentials.keyScope) {
      const key = this.#ofKey(credentials.keyScope, creator);
      held = held ? intersection(held, key) : key;
    }
    return held ?? NO_PERMISSIONS;
  }

  /** Memoised per verified key (its scope object) and its creator's current permissions. */
  #ofKey(scope: KeyScope, creator: PermissionSet | undefined): PermissionSet {
    if (scope.permissions === null && scope.createdBy === null) return this.#catalogue.all;
    const memo = this.#keyPermissions.get(scope);
    if (memo && memo.creator === creator) return memo.held;
    const own =
      scope.permissions === null
        ? this.#catalogue.all
        : intersection(freezeSet(scope.permissions), this.#catalogue.all);
    const held = creator ? intersection(own, creator) : own;
    this.#keyPermissions.set(scope, { creator, held });
    return held;
  }
}
