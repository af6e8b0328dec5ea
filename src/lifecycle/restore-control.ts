import { v7 as uuidv7 } from 'uuid';
import { BUILT_IN_ROLES } from '../auth/permissions.js';
import { normaliseEmail } from '../auth/user-email.js';
import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import { isUuid } from '../tenants/slug.js';
import { assertHostsFree, checkHosts, insertHosts, type TenancyRules } from '../tenants/tenant-rules.js';

/**
 * The control-plane records of an archive that a restore into a new tenant brings back, checked
 * record by record (an archive is input like any other: its checksums prove it whole, not
 * harmless). Users, roles, groups and their memberships get new ids (the originals may still
 * exist: a restore as a new tenant beside its source); API keys, clients and sessions are not
 * restored, and the audit trail stays in the archive.
 */
export interface ControlRecords {
  hosts: string[];
  users: UserRecord[];
  roles: RoleRecord[];
  groups: GroupRecord[];
  userRoles: [string, string][];
  groupMembers: [string, string][];
  groupRoles: [string, string][];
  /** Records an archive holds that a new tenant does not get back, by section. */
  notRestored: Record<string, number>;
}

interface UserRecord {
  id: string;
  email: string;
  name: string | null;
  status: 'active' | 'inactive';
  passwordHash: string | null;
  createdAt: string;
  updatedAt: string;
  lastLoginAt: string | null;
}

interface RoleRecord {
  id: string;
  name: string;
  builtIn: string | null;
  permissions: string[];
  isDefault: boolean;
  createdAt: string;
  updatedAt: string;
}

interface GroupRecord {
  id: string;
  name: string;
  root: boolean;
  createdAt: string;
  updatedAt: string;
}

export function emptyControlRecords(): ControlRecords {
  return {
    hosts: [],
    users: [],
    roles: [],
    groups: [],
    userRoles: [],
    groupMembers: [],
    groupRoles: [],
    notRestored: {},
  };
}

function bad(section: string, what: string): TenantryError {
  return new TenantryError('validation_failed', `the archive's control/${section} has ${what}`, {
    field: 'archive',
  });
}

function text(section: string, value: unknown, name: string, max: number): string {
  if (typeof value !== 'string' || value.length > max)
    throw bad(section, `a record whose ${name} is not text`);
  return value;
}

function optionalText(section: string, value: unknown, name: string, max: number): string | null {
  return value === null || value === undefined ? null : text(section, value, name, max);
}

function id(section: string, value: unknown, name = 'id'): string {
  if (typeof value !== 'string' || !isUuid(value)) throw bad(section, `a record whose ${name} is not a UUID`);
  return value;
}

function timestamp(section: string, value: unknown, name: string): string {
  const stamp = text(section, value, name, 64);
  if (Number.isNaN(Date.parse(stamp))) throw bad(section, `a record whose ${name} is not a time`);
  return stamp;
}

function flag(section: string, value: unknown, name: string): boolean {
  if (typeof value !== 'boolean') throw bad(section, `a record whose ${name} is not true or false`);
  return value;
}

/** Adds one JSON line of `section` to the records. */
export function addControlRecord(records: ControlRecords, section: string, line: string): void {
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw bad(section, 'a line that is not JSON');
  }
  if (!value || typeof value !== 'object' || Array.isArray(value))
    throw bad(section, 'a line that is not an object');
  switch (section) {
    case 'hosts':
      records.hosts.push(text(section, value.host, 'host', 253));
      return;
    case 'users': {
      const status = value.status;
      if (status !== 'active' && status !== 'inactive') throw bad(section, 'a user of an unknown status');
      let email: string;
      try {
        email = normaliseEmail(value.email);
      } catch {
        throw bad(section, 'a user whose email is not valid');
      }
      records.users.push({
        id: id(section, value.id),
        email,
        name: optionalText(section, value.name, 'name', 200),
        status,
        passwordHash: optionalText(section, value.password_hash, 'password_hash', 1000),
        createdAt: timestamp(section, value.created_at, 'created_at'),
        updatedAt: timestamp(section, value.updated_at, 'updated_at'),
        lastLoginAt:
          value.last_login_at === null ? null : timestamp(section, value.last_login_at, 'last_login_at'),
      });
      return;
    }
    case 'roles': {
      const builtIn = optionalText(section, value.built_in, 'built_in', 40);
      if (builtIn !== null && !(BUILT_IN_ROLES as readonly string[]).includes(builtIn)) {
        throw bad(section, 'a role of an unknown built-in kind');
      }
      const permissions = value.permissions;
      if (!Array.isArray(permissions) || permissions.length > 1000)
        throw bad(section, 'a role whose permissions are not a list');
      records.roles.push({
        id: id(section, value.id),
        name: text(section, value.name, 'name', 100),
        builtIn,
        permissions: permissions.map((permission) => text(section, permission, 'permission', 200)),
        isDefault: flag(section, value.is_default, 'is_default'),
        createdAt: timestamp(section, value.created_at, 'created_at'),
        updatedAt: timestamp(section, value.updated_at, 'updated_at'),
      });
      return;
    }
    case 'groups':
      records.groups.push({
        id: id(section, value.id),
        name: text(section, value.name, 'name', 100),
        root: flag(section, value.root, 'root'),
        createdAt: timestamp(section, value.created_at, 'created_at'),
        updatedAt: timestamp(section, value.updated_at, 'updated_at'),
      });
      return;
    case 'user-roles':
      records.userRoles.push([id(section, value.user_id, 'user_id'), id(section, value.role_id, 'role_id')]);
      return;
    case 'group-members':
      records.groupMembers.push([
        id(section, value.group_id, 'group_id'),
        id(section, value.user_id, 'user_id'),
      ]);
      return;
    case 'group-roles':
      records.groupRoles.push([
        id(section, value.group_id, 'group_id'),
        id(section, value.role_id, 'role_id'),
      ]);
      return;
    default:
      records.notRestored[section] = (records.notRestored[section] ?? 0) + 1;
  }
}

export interface ControlOutcome {
  readonly users: number;
  readonly skippedUsers: readonly string[];
  readonly hosts: readonly string[];
  readonly skippedHosts: readonly string[];
}

/** Emails of the archive's users that accounts of this deployment hold already. */
export async function takenEmails(db: Queryable, records: ControlRecords): Promise<string[]> {
  if (records.users.length === 0) return [];
  const { rows } = await db.query<{ email: string }>(
    'SELECT email FROM tenantry.users WHERE email = ANY($1::text[]) ORDER BY email',
    [records.users.map((user) => user.email)],
  );
  return rows.map((row) => row.email);
}

/** The archive's hosts this tenant may have: well formed and held by no other tenant. */
export async function freeHosts(
  db: Queryable,
  records: ControlRecords,
  tenant: { readonly id: string; readonly slug: string },
  rules: TenancyRules,
): Promise<{ free: string[]; taken: string[] }> {
  const free: string[] = [];
  const taken: string[] = [];
  for (const host of records.hosts) {
    try {
      const [checked] = checkHosts([host], rules);
      await assertHostsFree(db, [checked!], tenant, rules);
      free.push(checked!);
    } catch (error) {
      if (!(error instanceof TenantryError)) throw error;
      taken.push(host);
    }
  }
  return { free, taken };
}

/**
 * Inserts the records into the new tenant, in the caller's transaction: users whose emails are
 * taken are left out (the caller decided they may be), with their memberships.
 */
export async function insertControlRecords(
  tx: Queryable,
  tenantId: string,
  records: ControlRecords,
  skipEmails: ReadonlySet<string>,
  hosts: readonly string[],
): Promise<number> {
  const users = new Map<string, string>();
  const roles = new Map<string, string>();
  const groups = new Map<string, string>();
  for (const user of records.users) {
    if (skipEmails.has(user.email)) continue;
    const newId = uuidv7();
    users.set(user.id, newId);
    await tx.query(
      `INSERT INTO tenantry.users (id, tenant_id, email, name, status, password_hash, created_at, updated_at, last_login_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
      [
        newId,
        tenantId,
        user.email,
        user.name,
        user.status,
        user.passwordHash,
        user.createdAt,
        user.updatedAt,
        user.lastLoginAt,
      ],
    );
  }
  for (const role of records.roles) {
    const newId = uuidv7();
    roles.set(role.id, newId);
    await tx.query(
      `INSERT INTO tenantry.roles (id, tenant_id, name, built_in, permissions, is_default, created_at, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        newId,
        tenantId,
        role.name,
        role.builtIn,
        role.permissions,
        role.isDefault,
        role.createdAt,
        role.updatedAt,
      ],
    );
  }
  for (const group of records.groups) {
    const newId = uuidv7();
    groups.set(group.id, newId);
    await tx.query(
      `INSERT INTO tenantry.groups (id, tenant_id, name, root, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)`,
      [newId, tenantId, group.name, group.root, group.createdAt, group.updatedAt],
    );
  }
  const pairs = async (
    table: string,
    columns: [string, string],
    list: readonly [string, string][],
    maps: [Map<string, string>, Map<string, string>],
  ) => {
    const mapped = list
      .map(([a, b]) => [maps[0].get(a), maps[1].get(b)] as const)
      .filter((pair): pair is readonly [string, string] => pair[0] !== undefined && pair[1] !== undefined);
    if (mapped.length === 0) return;
    await tx.query(
      `INSERT INTO tenantry.${table} (tenant_id, ${columns[0]}, ${columns[1]})
       SELECT $1, a, b FROM unnest($2::uuid[], $3::uuid[]) AS p(a, b) ON CONFLICT DO NOTHING`,
      [tenantId, mapped.map((pair) => pair[0]), mapped.map((pair) => pair[1])],
    );
  };
  await pairs('user_roles', ['user_id', 'role_id'], records.userRoles, [users, roles]);
  await pairs('group_members', ['group_id', 'user_id'], records.groupMembers, [groups, users]);
  await pairs('group_roles', ['group_id', 'role_id'], records.groupRoles, [groups, roles]);
  await insertHosts(tx, tenantId, hosts);
  return users.size;
}
