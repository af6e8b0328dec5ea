import type { ConnectionPool, Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { type AuditIntent, auditedChange, type ChangeRecord } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { QuotaExceededError } from '../runtime/quota.js';
import type { Tenant } from '../tenants/tenant.js';
import { isBeingBuilt } from '../tenants/tenant.js';
import type { TenantStore } from '../tenants/tenant-store.js';
import { type ApiKeyRequest, checkKeyId, parseApiKeyRequest } from './api-key-input.js';
import {
  type ApiKeyInfo,
  countLiveKeys,
  type IssuedApiKey,
  insertApiKey,
  listTenantKeys,
  prepareApiKey,
  revokeTenantKey,
  revokeTenantKeys,
} from './api-key-store.js';
import { assertCanGrant, type Principal, requirePermission } from './delegation.js';
import type { PermissionCatalogue } from './permissions.js';

/** A further key of a tenant, shown once. */
export interface CreatedApiKey extends IssuedApiKey {
  readonly name: string;
  readonly expiresAt: Date | null;
  /** Null: every tenant permission. */
  readonly permissions: readonly string[] | null;
}

export interface TenantKeysDeps {
  readonly owner: ConnectionPool;
  readonly bus: ChangeBus;
  readonly store: TenantStore;
  readonly catalogue: PermissionCatalogue;
  /** PBKDF2 iterations of new keys. */
  readonly iterations: () => number;
}

/**
 * A tenant's API keys, managed by whoever holds `keys:manage` in it: an operator (every
 * permission) or a tenant actor. One rule for both: a key holds at most what its maker holds
 * (without `permissions`, an operator's key holds every tenant permission and an actor's key what
 * the actor holds today), and a key made by a user never more than that user holds later either.
 */
export class TenantKeys {
  readonly #deps: TenantKeysDeps;

  constructor(deps: TenantKeysDeps) {
    this.#deps = deps;
  }

  /** The tenant's keys, never their secrets. */
  list(tenantId: string, options: { includeRevoked?: boolean | undefined } = {}): Promise<ApiKeyInfo[]> {
    return listTenantKeys(this.#deps.owner, tenantId, options.includeRevoked ?? false);
  }

  /**
   * Issues a further key (shown once), keeping the others. Refused with `quota_exceeded` when the
   * tenant already has `limits.maxApiKeys` live keys: they are counted with the tenant's row
   * locked, so concurrent creations take turns and never pass the limit together.
   */
  async create(principal: Principal, input: unknown): Promise<CreatedApiKey> {
    requirePermission(principal, 'keys:manage');
    const request = this.#scoped(principal, parseApiKeyRequest(input));
    const current = await this.#deps.store.get(principal.tenantId);
    // Hashed before the transaction: the slow hash must not hold the tenant's lock.
    const prepared = await prepareApiKey(this.#deps.iterations());
    const audit = { action: 'tenant.key.create', target: current.slug, tenantId: current.id };
    return this.#change(principal.context, audit, async (tx) => {
      const locked = await this.#deps.store.lockLive(tx, current.id, current.id);
      if (isBeingBuilt(locked.status)) {
        throw new TenantryError('conflict', `the tenant is still being built (${locked.status})`);
      }
      await assertKeyQuota(tx, locked);
      const issued = await insertApiKey(tx, current.id, prepared, request.name, request.expiresAt, {
        permissions: request.permissions,
        createdBy: principal.userId ?? principal.keyCreatedBy ?? null,
      });
      return {
        ...issued,
        name: request.name,
        expiresAt: request.expiresAt,
        permissions: request.permissions,
      };
    });
  }

  /**
   * Revokes one key; it stops authenticating at once, here and (through the change bus) in every
   * other process. Revoking a revoked key changes nothing. Only a key that holds no more than the
   * caller: a narrow key that may manage keys would otherwise cut off broader ones, the tenant's
   * operator keys included.
   */
  async revoke(principal: Principal, keyId: string): Promise<ApiKeyInfo> {
    requirePermission(principal, 'keys:manage');
    const checked = checkKeyId(keyId);
    const [key] = await listTenantKeys(this.#deps.owner, principal.tenantId, true, checked);
    if (key) assertCanGrant(principal, key.permissions ?? this.#deps.catalogue.all, 'revoking this key');
    const current = await this.#deps.store.get(principal.tenantId);
    const audit = { action: 'tenant.key.revoke', target: checked, tenantId: current.id };
    return this.#change(principal.context, audit, async (tx, record) => {
      await this.#deps.store.lockLive(tx, current.id, current.id);
      const revokedNow = await revokeTenantKey(tx, current.id, checked);
      if (revokedNow === undefined) {
        throw new TenantryError('not_found', `tenant "${current.slug}" has no key ${checked}`, {
          field: 'keyId',
        });
      }
      if (revokedNow) record.announce({ kind: 'key', tenantId: current.id, keyId: checked });
      const [info] = await listTenantKeys(tx, current.id, true, checked);
      return info!;
    });
  }

  /** Revokes every key of the tenant and issues a new one, shown once (operators only). */
  async regenerate(tenant: Tenant, context: ActionContext): Promise<IssuedApiKey> {
    const prepared = await prepareApiKey(this.#deps.iterations());
    const audit = { action: 'tenant.key.regenerate', target: tenant.slug, tenantId: tenant.id };
    return this.#change(context, audit, async (tx, record) => {
      await this.#deps.store.lockLive(tx, tenant.id, tenant.id);
      for (const keyId of await revokeTenantKeys(tx, tenant.id)) {
        record.announce({ kind: 'key', tenantId: tenant.id, keyId });
      }
      return insertApiKey(tx, tenant.id, prepared);
    });
  }

  /** The key's permissions: known ones, held by the maker; absent, what the maker holds. */
  #scoped(principal: Principal, request: ApiKeyRequest): ApiKeyRequest {
    const permissions =
      request.permissions ?? (principal.operator ? null : [...principal.permissions].sort());
    if (permissions === null) return request;
    const unknown = this.#deps.catalogue.unknown(permissions);
    if (unknown.length > 0) {
      throw new TenantryError(
        'validation_failed',
        `not tenant permissions (a key cannot hold them): ${unknown.slice(0, 10).join(', ')}`,
        { field: 'permissions' },
      );
    }
    assertCanGrant(principal, permissions, 'this key');
    return { ...request, permissions };
  }

  #change<T>(
    context: ActionContext,
    audit: AuditIntent,
    work: (tx: Queryable, record: ChangeRecord) => Promise<T>,
  ): Promise<T> {
    return auditedChange({ bus: this.#deps.bus }, this.#deps.owner, context, audit, work);
  }
}

async function assertKeyQuota(tx: Queryable, tenant: Tenant): Promise<void> {
  const max = tenant.effective.limits.maxApiKeys;
  if (max === undefined) return;
  const live = await countLiveKeys(tx, tenant.id);
  if (live >= max) {
    throw new QuotaExceededError(
      tenant.slug,
      'maxApiKeys',
      `this tenant may have ${max} live API keys (it has ${live}); revoke one first`,
    );
  }
}
