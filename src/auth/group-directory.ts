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
import { union } from './permissions.js';
import { findRoles, rowGrant } from './role-directory.js';

export interface GroupView {
  readonly id: string;
  readonly name: string;
  /** The tenant's root group ("everyone"): it cannot be deleted. */
  readonly root: boolean;
  readonly roles: readonly { readonly id: string; readonly name: string }[];
  readonly members: readonly { readonly id: string; readonly email: string }[];
  readonly createdAt: Date;
}

export interface GroupInput {
  readonly name?: string | undefined;
  /** Role ids or names; replaces the group's roles. */
  readonly roles?: readonly string[] | undefined;
  /** User ids; replaces the group's members. */
  readonly members?: readonly string[] | undefined;
}

interface GroupRow {
  [column: string]: unknown;
  id: string;
  name: string;
  root: boolean;
  created_at: Date | string;
}

/**
 * A tenant's groups. A group's roles reach all its members, so giving a group a role, or adding
 * someone to a group, grants that role's permissions: both need the principal to hold them.
 */
export class GroupDirectory {
  readonly #db: ConnectionPool;
  readonly #access: AccessControl;
  readonly #bus: ChangeBus;

  constructor(db: ConnectionPool, access: AccessControl, bus: ChangeBus) {
    this.#db = db;
    this.#access = access;
    this.#bus = bus;
  }

  async list(tenantId: string): Promise<GroupView[]> {
    await this.#db.transaction((tx) => bootstrapTenantAccess(tx, tenantId));
    const { rows } = await this.#db.query<GroupRow>(
      'SELECT id, name, root, created_at FROM tenantry.groups WHERE tenant_id = $1 ORDER BY NOT root, name',
      [tenantId],
    );
    return Promise.all(rows.map((row) => this.#view(this.#db, tenantId, row)));
  }

  async get(tenantId: string, ref: string): Promise<GroupView> {
    await this.#db.transaction((tx) => bootstrapTenantAccess(tx, tenantId));
    return this.#view(this.#db, tenantId, await findGroup(this.#db, tenantId, ref));
  }

  async create(principal: Principal, input: GroupInput): Promise<GroupView> {
    requirePermission(principal, 'groups:manage');
    const name = checkAccessName(input.name);
    return accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'group.create' },
      async (tx, record) => {
        const id = uuidv7();
        await tx
          .query('INSERT INTO tenantry.groups (id, tenant_id, name) VALUES ($1, $2, $3)', [
            id,
            principal.tenantId,
            name,
          ])
          .catch(nameTaken('group', name));
        const row = await findGroup(tx, principal.tenantId, id);
        await this.#apply(tx, principal, row, input);
        record.describe({
          target: id,
          details: { name, roles: input.roles, members: input.members },
        });
        return this.#view(tx, principal.tenantId, row);
      },
    );
  }

  async update(principal: Principal, ref: string, input: GroupInput): Promise<GroupView> {
    requirePermission(principal, 'groups:manage');
    const name = input.name === undefined ? undefined : checkAccessName(input.name);
    return accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'group.update' },
      async (tx, record) => {
        const row = await findGroup(tx, principal.tenantId, ref);
        await keepingAnAdmin(tx, principal.tenantId, async () => {
          if (name !== undefined && name !== row.name) {
            await tx
              .query(
                'UPDATE tenantry.groups SET name = $3, updated_at = now() WHERE tenant_id = $1 AND id = $2',
                [principal.tenantId, row.id, name],
              )
              .catch(nameTaken('group', name));
          }
          await this.#apply(tx, principal, row, input);
        });
        record.describe({
          target: row.id,
          details: { name, roles: input.roles, members: input.members },
        });
        return this.#view(tx, principal.tenantId, await findGroup(tx, principal.tenantId, row.id));
      },
    );
  }

  async delete(principal: Principal, ref: string): Promise<void> {
    requirePermission(principal, 'groups:manage');
    await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'group.delete' },
      async (tx, record) => {
        const row = await findGroup(tx, principal.tenantId, ref);
        if (row.root) throw new TenantryError('conflict', 'the root group cannot be deleted');
        await keepingAnAdmin(tx, principal.tenantId, () =>
          tx.query('DELETE FROM tenantry.groups WHERE tenant_id = $1 AND id = $2', [
            principal.tenantId,
            row.id,
          ]),
        );
        record.describe({
          target: row.id,
          details: { name: row.name },
        });
      },
    );
  }

  /** Replaces roles and members as asked, after checking the principal may grant what results. */
  async #apply(tx: Queryable, principal: Principal, group: GroupRow, input: GroupInput): Promise<void> {
    const tenantId = principal.tenantId;
    if (input.roles !== undefined) {
      const roles = await findRoles(tx, tenantId, input.roles);
      const { rows: current } = await tx.query<{ role_id: string }>(
        'SELECT role_id FROM tenantry.group_roles WHERE tenant_id = $1 AND group_id = $2',
        [tenantId, group.id],
      );
      const had = new Set(current.map((row) => row.role_id));
      const added = roles.filter((role) => !had.has(role.id));
      assertCanGrant(
        principal,
        union(added.map((role) => this.#access.permissionsOfRole(rowGrant(role)))),
        'giving these roles',
      );
      await tx.query('DELETE FROM tenantry.group_roles WHERE tenant_id = $1 AND group_id = $2', [
        tenantId,
        group.id,
      ]);
      for (const role of roles) {
        await tx.query(
          'INSERT INTO tenantry.group_roles (tenant_id, group_id, role_id) VALUES ($1, $2, $3)',
          [tenantId, group.id, role.id],
        );
      }
    }
    if (input.members !== undefined) {
      const members = [...new Set(input.members)];
      const { rows: found } = await tx.query<{ id: string }>(
        'SELECT id FROM tenantry.users WHERE tenant_id = $1 AND id = ANY($2::uuid[])',
        [tenantId, members.filter(isUuid)],
      );
      if (found.length !== members.length)
        throw new TenantryError('not_found', 'some members are not users of this tenant', {
          field: 'members',
        });
      const { rows: current } = await tx.query<{ user_id: string }>(
        'SELECT user_id FROM tenantry.group_members WHERE tenant_id = $1 AND group_id = $2',
        [tenantId, group.id],
      );
      const had = new Set(current.map((row) => row.user_id));
      if (members.some((id) => !had.has(id))) {
        // New members receive every role of the group.
        assertCanGrant(
          principal,
          await groupPermissions(tx, this.#access, tenantId, group.id),
          'adding members to this group',
        );
      }
      await tx.query('DELETE FROM tenantry.group_members WHERE tenant_id = $1 AND group_id = $2', [
        tenantId,
        group.id,
      ]);
      for (const userId of members) {
        await tx.query(
          'INSERT INTO tenantry.group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3)',
          [tenantId, group.id, userId],
        );
      }
    }
  }

  async #view(db: Queryable, tenantId: string, row: GroupRow): Promise<GroupView> {
    const [{ rows: roles }, { rows: members }] = [
      await db.query<{ id: string; name: string }>(
        `SELECT r.id, r.name FROM tenantry.group_roles gr JOIN tenantry.roles r ON r.id = gr.role_id
          WHERE gr.tenant_id = $1 AND gr.group_id = $2 ORDER BY r.name`,
        [tenantId, row.id],
      ),
      await db.query<{ id: string; email: string }>(
        `SELECT u.id, u.email FROM tenantry.group_members gm JOIN tenantry.users u ON u.id = gm.user_id
          WHERE gm.tenant_id = $1 AND gm.group_id = $2 ORDER BY u.email`,
        [tenantId, row.id],
      ),
    ];
    return Object.freeze({
      id: row.id,
      name: row.name,
      root: row.root,
      roles: roles.map((role) => ({ id: role.id, name: role.name })),
      members: members.map((member) => ({ id: member.id, email: member.email })),
      createdAt: new Date(row.created_at),
    });
  }
}

/** What membership of a group grants: the union of its roles. */
export async function groupPermissions(
  db: Queryable,
  access: AccessControl,
  tenantId: string,
  groupId: string,
) {
  const { rows } = await db.query<{ built_in: string | null; permissions: string[] }>(
    `SELECT r.built_in, r.permissions FROM tenantry.group_roles gr JOIN tenantry.roles r ON r.id = gr.role_id
      WHERE gr.tenant_id = $1 AND gr.group_id = $2`,
    [tenantId, groupId],
  );
  return union(rows.map((row) => access.permissionsOfRole(rowGrant(row))));
}

export async function findGroup(db: Queryable, tenantId: string, ref: string): Promise<GroupRow> {
  const { rows } = await db.query<GroupRow>(
    `SELECT id, name, root, created_at FROM tenantry.groups
      WHERE tenant_id = $1 AND ${isUuid(ref) ? 'id = $2::uuid' : 'name = $2'}`,
    [tenantId, ref],
  );
  if (!rows[0]) throw new TenantryError('not_found', `no group ${ref} in this tenant`);
  return rows[0];
}
