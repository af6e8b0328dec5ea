import type { Entity } from '../entities/entity.js';

/** What a tenant actor may do besides entity work: each names a built-in resource of the tenant. */
export const MANAGEMENT_PERMISSIONS = [
  'users:manage',
  'roles:manage',
  'groups:manage',
  'keys:manage',
  'clients:read',
  'clients:manage',
  'audit:read',
  'data:export',
] as const;

export const ENTITY_ACTIONS = ['read', 'create', 'update', 'delete'] as const;
export type EntityAction = (typeof ENTITY_ACTIONS)[number];

export const BUILT_IN_ROLES = ['tenant-admin', 'member', 'read-only'] as const;
export type BuiltInRole = (typeof BUILT_IN_ROLES)[number];

/** A set of permissions: immutable, compared by content. */
export type PermissionSet = ReadonlySet<string>;

export function entityPermission(entity: string, action: EntityAction): string {
  return `${entity}:${action}`;
}

/**
 * Every permission a tenant role can hold, derived from the declared tenant entities. Anything
 * else (admin routes, shared-data writes, raw SQL, another tenant) has no name here, so it cannot
 * be granted: a role or key naming it is refused at validation.
 */
export class PermissionCatalogue {
  readonly all: PermissionSet;
  readonly #builtIn: Readonly<Record<BuiltInRole, PermissionSet>>;

  constructor(entities: readonly Entity[]) {
    const tenantEntities = entities
      .filter((entity) => entity.scope === 'tenant')
      .map((entity) => entity.name);
    const entityPermissions = tenantEntities.flatMap((name) =>
      ENTITY_ACTIONS.map((action) => entityPermission(name, action)),
    );
    this.all = freezeSet([...entityPermissions, ...MANAGEMENT_PERMISSIONS]);
    this.#builtIn = Object.freeze({
      'tenant-admin': this.all,
      member: freezeSet([...entityPermissions, 'clients:read']),
      'read-only': freezeSet(tenantEntities.map((name) => entityPermission(name, 'read'))),
    });
  }

  /** A built-in role's permissions, computed from today's entities (so a new entity is included). */
  builtIn(role: BuiltInRole): PermissionSet {
    return this.#builtIn[role];
  }

  /** The permissions in `requested` that do not exist: an empty list means all are valid. */
  unknown(requested: Iterable<string>): string[] {
    return [...requested].filter((permission) => !this.all.has(permission));
  }
}

export function isBuiltInRole(name: string): name is BuiltInRole {
  return (BUILT_IN_ROLES as readonly string[]).includes(name);
}

export function freezeSet(values: Iterable<string>): PermissionSet {
  return Object.freeze(new Set(values)) as PermissionSet;
}

/** The permissions of `wanted` that `held` lacks. */
export function missingFrom(held: PermissionSet, wanted: Iterable<string>): string[] {
  return [...wanted].filter((permission) => !held.has(permission));
}

export function union(sets: Iterable<PermissionSet>): PermissionSet {
  const result = new Set<string>();
  for (const set of sets) for (const permission of set) result.add(permission);
  return freezeSet(result);
}

export function intersection(a: PermissionSet, b: PermissionSet): PermissionSet {
  return freezeSet([...a].filter((permission) => b.has(permission)));
}
