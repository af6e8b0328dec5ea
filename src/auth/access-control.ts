import { LRUCache } from 'lru-cache';
import type { Queryable } from '../db/database.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import {
  type BuiltInRole,
  freezeSet,
  intersection,
  isBuiltInRole,
  type PermissionCatalogue,
  type PermissionSet,
  union,
} from './permissions.js';

/** A role as stored: a built-in one takes its permissions from the catalogue. */
export interface RoleGrant {
  readonly builtIn: string | null;
  readonly permissions: readonly string[];
}

const EMPTY: PermissionSet = freezeSet([]);

/**
 * What a user may do in its tenant: the union of the roles given to it and to its groups. Built-in
 * roles follow today's entities; a stored permission whose entity is gone grants nothing. Answers
 * are cached per user and dropped, in every process, when the tenant's access changes.
 */
export class AccessControl {
  readonly #db: Queryable;
  readonly #catalogue: PermissionCatalogue;
  readonly #bus: ChangeBus;
  readonly #cache = new LRUCache<string, PermissionSet>({ max: 100_000, ttl: 300_000 });
  #generation = 0;

  constructor(db: Queryable, bus: ChangeBus, catalogue: PermissionCatalogue) {
    this.#db = db;
    this.#bus = bus;
    this.#catalogue = catalogue;
    bus.subscribe((change) => {
      this.#generation += 1;
      if (change === 'all') this.#cache.clear();
      else if (change.kind === 'access' || change.kind === 'tenant') {
        const prefix = `${change.tenantId}:`;
        for (const key of this.#cache.keys()) if (key.startsWith(prefix)) this.#cache.delete(key);
      }
    });
  }

  get catalogue(): PermissionCatalogue {
    return this.#catalogue;
  }

  permissionsOfRole(role: RoleGrant): PermissionSet {
    if (role.builtIn !== null && isBuiltInRole(role.builtIn))
      return this.#catalogue.builtIn(role.builtIn as BuiltInRole);
    return intersection(freezeSet(role.permissions), this.#catalogue.all);
  }

  userPermissionsCached(tenantId: string, userId: string): PermissionSet | undefined {
    return this.#bus.reliable ? this.#cache.get(`${tenantId}:${userId}`) : undefined;
  }

  /**
   * What a user's roles and groups grant, whatever the user's status: what it would hold if it
   * were active. Managing a user (its status, roles, email, password, deletion) needs all of it,
   * so an inactive user cannot be taken over by someone who holds less.
   */
  async grantedPermissions(tenantId: string, userId: string, db: Queryable): Promise<PermissionSet> {
    return this.#query(tenantId, userId, db, false);
  }

  /** Through `db` when given (inside a transaction that is changing them). */
  async userPermissions(tenantId: string, userId: string, db: Queryable = this.#db): Promise<PermissionSet> {
    const useCache = db === this.#db;
    if (useCache) {
      const cached = this.userPermissionsCached(tenantId, userId);
      if (cached) return cached;
    }
    const generation = this.#generation;
    const permissions = await this.#query(tenantId, userId, db, true);
    if (useCache && generation === this.#generation && this.#bus.reliable)
      this.#cache.set(`${tenantId}:${userId}`, permissions);
    return permissions;
  }

  async #query(tenantId: string, userId: string, db: Queryable, activeOnly: boolean): Promise<PermissionSet> {
    const { rows } = await db.query<{ built_in: string | null; permissions: string[] }>(
      `SELECT r.built_in, r.permissions FROM tenantry.roles r
        WHERE r.tenant_id = $1
          AND (r.id IN (SELECT ur.role_id FROM tenantry.user_roles ur
                         WHERE ur.tenant_id = $1 AND ur.user_id = $2)
            OR r.id IN (SELECT gr.role_id FROM tenantry.group_roles gr
                          JOIN tenantry.group_members gm ON gm.group_id = gr.group_id AND gm.tenant_id = gr.tenant_id
                         WHERE gm.tenant_id = $1 AND gm.user_id = $2))
          AND EXISTS (SELECT 1 FROM tenantry.users u WHERE u.id = $2 AND u.tenant_id = $1
                        AND (u.status = 'active' OR NOT $3))`,
      [tenantId, userId, activeOnly],
    );
    return rows.length === 0
      ? EMPTY
      : union(
          rows.map((row) => this.permissionsOfRole({ builtIn: row.built_in, permissions: row.permissions })),
        );
  }
}
