import type { Queryable } from '../db/database.js';
import type { AccessControl } from './access-control.js';
import { assertCanGrant, type Principal } from './delegation.js';
import { findGroup, groupPermissions } from './group-directory.js';
import { union } from './permissions.js';
import { findRoles, rowGrant } from './role-directory.js';

/** Refuses unless the principal holds every permission the user holds. */
export async function assertCoversUser(
  tx: Queryable,
  access: AccessControl,
  principal: Principal,
  userId: string,
  what: string,
): Promise<void> {
  if (principal.userId === userId) return;
  const target = await access.grantedPermissions(principal.tenantId, userId, tx);
  assertCanGrant(principal, target, what);
}

export async function setUserRoles(
  tx: Queryable,
  access: AccessControl,
  principal: Principal,
  userId: string,
  refs: readonly string[],
): Promise<void> {
  const roles = await findRoles(tx, principal.tenantId, refs);
  const { rows: current } = await tx.query<{ role_id: string }>(
    'SELECT role_id FROM tenantry.user_roles WHERE tenant_id = $1 AND user_id = $2',
    [principal.tenantId, userId],
  );
  const had = new Set(current.map((row) => row.role_id));
  const added = roles.filter((role) => !had.has(role.id));
  assertCanGrant(
    principal,
    union(added.map((role) => access.permissionsOfRole(rowGrant(role)))),
    'giving these roles',
  );
  await tx.query('DELETE FROM tenantry.user_roles WHERE tenant_id = $1 AND user_id = $2', [
    principal.tenantId,
    userId,
  ]);
  for (const role of roles) {
    await tx.query('INSERT INTO tenantry.user_roles (tenant_id, user_id, role_id) VALUES ($1, $2, $3)', [
      principal.tenantId,
      userId,
      role.id,
    ]);
  }
}

export async function setUserGroups(
  tx: Queryable,
  access: AccessControl,
  principal: Principal,
  userId: string,
  refs: readonly string[],
): Promise<void> {
  const tenantId = principal.tenantId;
  const groups = [];
  for (const ref of new Set(refs)) groups.push(await findGroup(tx, tenantId, ref));
  const { rows: rootRows } = await tx.query<{ id: string }>(
    'SELECT id FROM tenantry.groups WHERE tenant_id = $1 AND root',
    [tenantId],
  );
  const wanted = new Map(groups.map((group) => [group.id, group]));
  // Everyone is in the root group.
  for (const root of rootRows)
    wanted.set(root.id, { id: root.id, name: 'everyone', root: true, created_at: new Date() });
  const { rows: current } = await tx.query<{ group_id: string }>(
    'SELECT group_id FROM tenantry.group_members WHERE tenant_id = $1 AND user_id = $2',
    [tenantId, userId],
  );
  const had = new Set(current.map((row) => row.group_id));
  for (const group of wanted.values()) {
    if (had.has(group.id)) continue;
    assertCanGrant(
      principal,
      await groupPermissions(tx, access, tenantId, group.id),
      `adding to group ${group.name}`,
    );
  }
  await tx.query('DELETE FROM tenantry.group_members WHERE tenant_id = $1 AND user_id = $2', [
    tenantId,
    userId,
  ]);
  for (const groupId of wanted.keys()) {
    await tx.query('INSERT INTO tenantry.group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3)', [
      tenantId,
      groupId,
      userId,
    ]);
  }
}
