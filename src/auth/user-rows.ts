import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import { isUuid } from './access-names.js';

export type UserStatus = 'active' | 'inactive';

export interface UserView {
  readonly id: string;
  readonly email: string;
  readonly name: string | null;
  readonly status: UserStatus;
  readonly tenantId: string | null;
  readonly globalAdmin: boolean;
  readonly roles: readonly { readonly id: string; readonly name: string }[];
  readonly groups: readonly { readonly id: string; readonly name: string }[];
  /** Whether the user can log in yet (false until the set-up token is used). */
  readonly passwordSet: boolean;
  readonly createdAt: Date;
  readonly lastLoginAt: Date | null;
}

export interface UserRow {
  [column: string]: unknown;
  id: string;
  tenant_id: string | null;
  email: string;
  name: string | null;
  status: UserStatus;
  global_admin: boolean;
  has_password: boolean;
  created_at: Date | string;
  last_login_at: Date | string | null;
}

export const USER_COLUMNS =
  'id, tenant_id, email, name, status, global_admin, password_hash IS NOT NULL AS has_password, created_at, last_login_at';

/** A user of the tenant by id; 404 for anything else, another tenant's users included. */
export async function findUser(db: Queryable, tenantId: string, id: string): Promise<UserRow> {
  if (!isUuid(id)) throw new TenantryError('not_found', 'no such user in this tenant');
  const { rows } = await db.query<UserRow>(
    `SELECT ${USER_COLUMNS} FROM tenantry.users WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id],
  );
  if (!rows[0]) throw new TenantryError('not_found', 'no such user in this tenant');
  return rows[0];
}

/** Users of a tenant, active or not. */
export async function countTenantUsers(db: Queryable, tenantId: string): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    'SELECT count(*)::int AS count FROM tenantry.users WHERE tenant_id = $1',
    [tenantId],
  );
  return Number(rows[0]?.count ?? 0);
}

/** The user of a row, with its roles and groups. */
export async function loadUserView(db: Queryable, row: UserRow): Promise<UserView> {
  const { rows: roles } = await db.query<{ id: string; name: string }>(
    `SELECT r.id, r.name FROM tenantry.user_roles ur JOIN tenantry.roles r ON r.id = ur.role_id
        WHERE ur.user_id = $1 ORDER BY r.name`,
    [row.id],
  );
  const { rows: groups } = await db.query<{ id: string; name: string }>(
    `SELECT g.id, g.name FROM tenantry.group_members gm JOIN tenantry.groups g ON g.id = gm.group_id
        WHERE gm.user_id = $1 ORDER BY g.name`,
    [row.id],
  );
  return Object.freeze({
    id: row.id,
    email: row.email,
    name: row.name,
    status: row.status,
    tenantId: row.tenant_id,
    globalAdmin: row.global_admin,
    roles: roles.map((role) => ({ id: role.id, name: role.name })),
    groups: groups.map((group) => ({ id: group.id, name: group.name })),
    passwordSet: row.has_password,
    createdAt: new Date(row.created_at),
    lastLoginAt: row.last_login_at === null ? null : new Date(row.last_login_at),
  });
}
