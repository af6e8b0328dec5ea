import { v7 as uuidv7 } from 'uuid';
import type { ConnectionPool, Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import type { AccessControl } from './access-control.js';
import { checkAccessName, isUuid, nameTaken } from './access-names.js';
import {
  accessChange,
  assertCanGrant,
  bootstrapTenantAccess,
  keepingAnAdmin,
  type Principal,
  requirePermission,
} from './delegation.js';
import { missingFrom } from './permissions.js';

export interface RoleView {
  readonly id: string;
  readonly name: string;
  readonly builtIn: boolean;
  /** Given to every new user of the tenant. */
  readonly default: boolean;
  /** What the role grants today (a built-in role follows the declared entities). */
  readonly permissions: readonly string[];
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export interface RoleRow {
  [column: string]: unknown;
  id: string;
  name: string;
  built_in: string | null;
  permissions: string[];
  is_default: boolean;
  created_at: Date | string;
  updated_at: Date | string;
}

const ROLE_COLUMNS = 'id, name, built_in, permissions, is_default, created_at, updated_at';

export interface RoleInput {
  readonly name?: string | undefined;
  readonly permissions?: readonly string[] | undefined;
  readonly default?: boolean | undefined;
}

/**
 * A tenant's roles: the three built-in ones (fixed, following the entities) and its own. Creating
 * or editing a role may only add permissions the acting principal holds.
 */
export class RoleDirectory {
  readonly #db: ConnectionPool;
  readonly #access: AccessControl;
  readonly #bus: ChangeBus;

  constructor(db: ConnectionPool, access: AccessControl, bus: ChangeBus) {
    this.#db = db;
    this.#access = access;
    this.#bus = bus;
  }

  async list(tenantId: string): Promise<RoleView[]> {
    await this.#db.transaction((tx) => bootstrapTenantAccess(tx, tenantId));
    const { rows } = await this.#db.query<RoleRow>(
      `SELECT ${ROLE_COLUMNS} FROM tenantry.roles WHERE tenant_id = $1 ORDER BY built_in IS NULL, name`,
      [tenantId],
    );
    return rows.map((row) => this.view(row));
  }

  async get(tenantId: string, ref: string): Promise<RoleView> {
    await this.#db.transaction((tx) => bootstrapTenantAccess(tx, tenantId));
    return this.view(await findRole(this.#db, tenantId, ref));
  }

  async create(principal: Principal, input: RoleInput): Promise<RoleView> {
    requirePermission(principal, 'roles:manage');
    const name = checkAccessName(input.name);
    const permissions = this.#checkPermissions(input.permissions ?? []);
    assertCanGrant(principal, permissions, 'this role');
    const row = await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'role.create' },
      async (tx, record) => {
        if (input.default)
          await tx.query('UPDATE tenantry.roles SET is_default = false WHERE tenant_id = $1', [
            principal.tenantId,
          ]);
        const { rows } = await tx
          .query<RoleRow>(
            `INSERT INTO tenantry.roles (id, tenant_id, name, permissions, is_default) VALUES ($1, $2, $3, $4, $5)
           RETURNING ${ROLE_COLUMNS}`,
            [uuidv7(), principal.tenantId, name, permissions, input.default ?? false],
          )
          .catch(nameTaken('role', name));
        record.describe({
          target: rows[0]!.id,
          details: { name, permissions },
        });
        return rows[0]!;
      },
    );
    return this.view(row);
  }

  async update(principal: Principal, ref: string, input: RoleInput): Promise<RoleView> {
    requirePermission(principal, 'roles:manage');
    const name = input.name === undefined ? undefined : checkAccessName(input.name);
    const permissions =
      input.permissions === undefined ? undefined : this.#checkPermissions(input.permissions);
    const row = await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'role.update' },
      async (tx, record) => {
        const current = await findRole(tx, principal.tenantId, ref, true);
        if (current.built_in !== null && (name !== undefined || permissions !== undefined)) {
          throw new TenantryError(
            'conflict',
            `the built-in role ${current.name} cannot be renamed or changed`,
          );
        }
        if (permissions !== undefined) {
          // Removing is restricting, always allowed; what is added must be held.
          assertCanGrant(principal, missingFrom(new Set(current.permissions), permissions), 'this change');
        }
        if (input.default) {
          // Making a role the default gives it to every future user: the principal must hold it all.
          assertCanGrant(
            principal,
            this.#access.permissionsOfRole(rowGrant(current)),
            'making this role the default',
          );
          await tx.query('UPDATE tenantry.roles SET is_default = false WHERE tenant_id = $1', [
            principal.tenantId,
          ]);
        }
        const { rows } = await keepingAnAdmin(tx, principal.tenantId, () =>
          tx
            .query<RoleRow>(
              `UPDATE tenantry.roles SET name = coalesce($3, name), permissions = coalesce($4, permissions),
                    is_default = coalesce($5, is_default), updated_at = now()
              WHERE tenant_id = $1 AND id = $2 RETURNING ${ROLE_COLUMNS}`,
              [principal.tenantId, current.id, name ?? null, permissions ?? null, input.default ?? null],
            )
            .catch(nameTaken('role', name ?? current.name)),
        );
        record.describe({
          target: current.id,
          details: { name, permissions, default: input.default },
        });
        return rows[0]!;
      },
    );
    return this.view(row);
  }

  async delete(principal: Principal, ref: string): Promise<void> {
    requirePermission(principal, 'roles:manage');
    await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'role.delete' },
      async (tx, record) => {
        const current = await findRole(tx, principal.tenantId, ref, true);
        if (current.built_in !== null)
          throw new TenantryError('conflict', `the built-in role ${current.name} cannot be deleted`);
        if (current.is_default)
          throw new TenantryError(
            'conflict',
            'the default role cannot be deleted: make another one the default first',
          );
        await tx.query('DELETE FROM tenantry.roles WHERE tenant_id = $1 AND id = $2', [
          principal.tenantId,
          current.id,
        ]);
        record.describe({
          target: current.id,
          details: { name: current.name },
        });
      },
    );
  }

  view(row: RoleRow): RoleView {
    return Object.freeze({
      id: row.id,
      name: row.name,
      builtIn: row.built_in !== null,
      default: row.is_default,
      permissions: Object.freeze([...this.#access.permissionsOfRole(rowGrant(row))].sort()),
      createdAt: new Date(row.created_at),
      updatedAt: new Date(row.updated_at),
    });
  }

  #checkPermissions(permissions: readonly string[]): string[] {
    if (!Array.isArray(permissions))
      throw new TenantryError('validation_failed', 'permissions must be a list', { field: 'permissions' });
    const unknown = this.#access.catalogue.unknown(permissions);
    if (unknown.length > 0) {
      throw new TenantryError(
        'validation_failed',
        `not tenant permissions (they cannot be granted to a tenant role): ${unknown.slice(0, 10).join(', ')}`,
        { field: 'permissions' },
      );
    }
    return [...new Set(permissions)].sort();
  }
}

export function rowGrant(row: { built_in: string | null; permissions: string[] }) {
  return { builtIn: row.built_in, permissions: row.permissions };
}

/** A role of the tenant by id or name; 404 otherwise (another tenant's role is simply not found). */
export async function findRole(
  db: Queryable,
  tenantId: string,
  ref: string,
  forUpdate = false,
): Promise<RoleRow> {
  const { rows } = await db.query<RoleRow>(
    `SELECT ${ROLE_COLUMNS} FROM tenantry.roles
      WHERE tenant_id = $1 AND ${isUuid(ref) ? 'id = $2::uuid' : 'name = $2'}${forUpdate ? ' FOR UPDATE' : ''}`,
    [tenantId, ref],
  );
  if (!rows[0]) throw new TenantryError('not_found', `no role ${ref} in this tenant`);
  return rows[0];
}

/** Several roles by id or name, each required to exist in the tenant. */
export async function findRoles(
  db: Queryable,
  tenantId: string,
  refs: readonly string[],
): Promise<RoleRow[]> {
  const found: RoleRow[] = [];
  for (const ref of new Set(refs)) found.push(await findRole(db, tenantId, ref));
  return [...new Map(found.map((row) => [row.id, row])).values()];
}
