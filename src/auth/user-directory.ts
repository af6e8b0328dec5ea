import { hash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { ConnectionPool, Queryable } from '../db/database.js';
import { isSqlState } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { QuotaExceededError } from '../runtime/quota.js';
import type { AccessControl } from './access-control.js';
import { isUuid } from './access-names.js';
import { revokeKeysMadeBy } from './api-key-store.js';
import {
  accessChange,
  assertCanGrant,
  keepingAnAdmin,
  type Principal,
  requirePermission,
} from './delegation.js';
import { findGroup, groupPermissions } from './group-directory.js';
import { checkPasswordPolicy, hashPassword } from './password.js';
import { union } from './permissions.js';
import { findRoles, rowGrant } from './role-directory.js';
import { revokeUserSessions } from './session-store.js';

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

export interface UserInput {
  readonly email?: string | undefined;
  readonly name?: string | null | undefined;
  readonly password?: string | undefined;
  /** Role ids or names; on creation, absent means the tenant's default role. Replaces the user's roles. */
  readonly roles?: readonly string[] | undefined;
  /** Group ids or names (besides the root group, which every user is in). Replaces the user's groups. */
  readonly groups?: readonly string[] | undefined;
  readonly status?: UserStatus | undefined;
}

/** A user made without a password: the one-time set-up token is shown once, stored as a hash. */
export interface CreatedUser {
  readonly user: UserView;
  readonly setupToken?: string;
  readonly warning?: string;
}

interface UserRow {
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

const USER_COLUMNS =
  'id, tenant_id, email, name, status, global_admin, password_hash IS NOT NULL AS has_password, created_at, last_login_at';
const EMAIL = /^[^\s@]{1,64}@[^\s@]+\.[^\s@]{2,}$/;
const SETUP_TOKEN_PREFIX = 'tnu_';
const SETUP_TTL_MS = 7 * 86_400_000;
export const SETUP_TOKEN_WARNING =
  'Give this set-up token to the user now: it is shown only once, sets a password once, and expires in 7 days.';

/** Control characters, invisible format characters (zero-width space, bidi controls) and line separators. */
const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * The one spelling a login name is stored and looked up in: trimmed, lower case, Unicode NFC (an
 * "é" typed as one character or as "e" and an accent is one account, not two).
 */
export function canonicalEmail(raw: string): string {
  return raw.trim().toLowerCase().normalize('NFC');
}

export function normaliseEmail(raw: unknown, field = 'email'): string {
  const email = typeof raw === 'string' ? canonicalEmail(raw) : '';
  // Invisible characters would make two accounts that look the same in every list and log.
  if (email.length > 254 || !EMAIL.test(email) || INVISIBLE.test(email))
    throw new TenantryError('validation_failed', `${field} is not a valid email address`, { field });
  return email;
}

/**
 * Users of tenants, and global admins (users without a tenant). Every change inside a tenant
 * goes through the delegation rule: the principal grants nothing it does not hold, and the last
 * tenant admin is never removed.
 */
export class UserDirectory {
  readonly #db: ConnectionPool;
  readonly #access: AccessControl;
  readonly #bus: ChangeBus;
  readonly #quota: (tenantId: string) => Promise<{ max: number; slug: string } | undefined>;

  constructor(
    db: ConnectionPool,
    access: AccessControl,
    bus: ChangeBus,
    quota: (tenantId: string) => Promise<{ max: number; slug: string } | undefined> = async () => undefined,
  ) {
    this.#db = db;
    this.#access = access;
    this.#bus = bus;
    this.#quota = quota;
  }

  async list(tenantId: string): Promise<UserView[]> {
    const { rows } = await this.#db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.users WHERE tenant_id = $1 ORDER BY email`,
      [tenantId],
    );
    return Promise.all(rows.map((row) => this.#view(this.#db, row)));
  }

  async emailTaken(email: string): Promise<boolean> {
    const { rows } = await this.#db.query('SELECT 1 FROM tenantry.users WHERE email = $1', [email]);
    return rows.length > 0;
  }

  /** A user of the tenant by id or email (the CLI names users by email). */
  async lookup(tenantId: string | null, ref: string): Promise<UserView> {
    const byId = isUuid(ref);
    const { rows } = await this.#db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.users
        WHERE tenant_id IS NOT DISTINCT FROM $1 AND ${byId ? 'id = $2::uuid' : 'email = $2'}`,
      [tenantId, byId ? ref : canonicalEmail(ref)],
    );
    if (!rows[0]) throw new TenantryError('not_found', `no user ${ref} here`);
    return this.#view(this.#db, rows[0]);
  }

  async listGlobalAdmins(): Promise<UserView[]> {
    const { rows } = await this.#db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.users WHERE tenant_id IS NULL ORDER BY email`,
    );
    return Promise.all(rows.map((row) => this.#view(this.#db, row)));
  }

  /** Any user by id, whatever its tenant (for the user's own session). */
  async find(id: string): Promise<UserView | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.#db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.users WHERE id = $1`,
      [id],
    );
    return rows[0] && this.#view(this.#db, rows[0]);
  }

  async get(tenantId: string, id: string): Promise<UserView> {
    return this.#view(this.#db, await findUser(this.#db, tenantId, id));
  }

  async create(principal: Principal, input: UserInput): Promise<CreatedUser> {
    requirePermission(principal, 'users:manage');
    const email = normaliseEmail(input.email);
    if (input.password !== undefined) checkPasswordPolicy(input.password);
    const passwordHash = input.password === undefined ? null : await hashPassword(input.password);
    const setup = passwordHash === null ? newSetupToken() : undefined;
    const tenantId = principal.tenantId;
    const quota = await this.#quota(tenantId);
    const row = await accessChange(this.#db, this.#bus, tenantId, async (tx) => {
      // Counted under the tenant's access lock: two creations cannot both take the last place.
      if (quota) {
        const users = await countTenantUsers(tx, tenantId);
        if (users >= quota.max) {
          throw new QuotaExceededError(
            quota.slug,
            'maxUsers',
            `this tenant may have ${quota.max} users (it has ${users})`,
          );
        }
      }
      const id = uuidv7();
      await tx
        .query(
          `INSERT INTO tenantry.users (id, tenant_id, email, name, status, password_hash, setup_token_hash, setup_expires_at)
           VALUES ($1, $2, $3, $4, 'active', $5, $6, $7)`,
          [
            id,
            tenantId,
            email,
            input.name ?? null,
            passwordHash,
            setup?.hash ?? null,
            setup ? new Date(Date.now() + SETUP_TTL_MS) : null,
          ],
        )
        .catch(emailTaken);
      const { rows: defaults } = await tx.query<{ id: string }>(
        'SELECT id FROM tenantry.roles WHERE tenant_id = $1 AND is_default',
        [tenantId],
      );
      const roles = input.roles ?? defaults.map((role) => role.id);
      await this.#setRoles(tx, principal, id, roles);
      await this.#setGroups(tx, principal, id, input.groups ?? []);
      await recordAudit(tx, principal.context, {
        action: 'user.create',
        outcome: 'success',
        tenantId,
        target: id,
        details: { email, roles: input.roles, groups: input.groups },
      });
      return findUser(tx, tenantId, id);
    });
    const user = await this.#view(this.#db, row);
    return setup ? { user, setupToken: setup.token, warning: SETUP_TOKEN_WARNING } : { user };
  }

  async update(principal: Principal, id: string, input: UserInput): Promise<UserView> {
    requirePermission(principal, 'users:manage');
    if (input.password !== undefined)
      throw new TenantryError('validation_failed', 'passwords are set with a set-up token (reset-password)', {
        field: 'password',
      });
    const email = input.email === undefined ? undefined : normaliseEmail(input.email);
    const tenantId = principal.tenantId;
    const row = await accessChange(this.#db, this.#bus, tenantId, async (tx) => {
      const current = await findUser(tx, tenantId, id);
      // Changing someone's login name lets the principal take the account over: only for
      // someone who holds at least everything the user holds.
      if (email !== undefined && email !== current.email)
        await this.#assertCovers(tx, principal, current.id, 'changing this email');
      // Deactivating, reactivating, or changing the roles and groups of someone who holds more
      // than the principal would let it disarm or take over that account.
      if (input.status !== undefined && input.status !== current.status)
        await this.#assertCovers(tx, principal, current.id, 'changing this user’s status');
      if (input.roles !== undefined || input.groups !== undefined)
        await this.#assertCovers(tx, principal, current.id, 'changing this user’s roles or groups');
      await keepingAnAdmin(tx, tenantId, async () => {
        await tx
          .query(
            `UPDATE tenantry.users SET email = coalesce($3, email), name = CASE WHEN $4 THEN $5 ELSE name END,
                    status = coalesce($6, status), updated_at = now() WHERE tenant_id = $1 AND id = $2`,
            [
              tenantId,
              current.id,
              email ?? null,
              input.name !== undefined,
              input.name ?? null,
              input.status ?? null,
            ],
          )
          .catch(emailTaken);
        if (input.roles !== undefined) await this.#setRoles(tx, principal, current.id, input.roles);
        if (input.groups !== undefined) await this.#setGroups(tx, principal, current.id, input.groups);
      });
      if (input.status === 'inactive' && current.status === 'active')
        await revokeUserSessions(tx, current.id);
      await recordAudit(tx, principal.context, {
        action: input.status === 'inactive' ? 'user.deactivate' : 'user.update',
        outcome: 'success',
        tenantId,
        target: current.id,
        details: { email, roles: input.roles, groups: input.groups, status: input.status },
      });
      return findUser(tx, tenantId, current.id);
    });
    return this.#view(this.#db, row);
  }

  async delete(principal: Principal, id: string): Promise<void> {
    requirePermission(principal, 'users:manage');
    const revoked = await accessChange(this.#db, this.#bus, principal.tenantId, async (tx) => {
      const current = await findUser(tx, principal.tenantId, id);
      await this.#assertCovers(tx, principal, current.id, 'deleting this user');
      // Keys made by the user end with it (a deleted maker would no longer bound their scope).
      const keyIds = await revokeKeysMadeBy(tx, principal.tenantId, current.id);
      for (const keyId of keyIds)
        await this.#bus.announce(tx, { kind: 'key', tenantId: principal.tenantId, keyId });
      await keepingAnAdmin(tx, principal.tenantId, () =>
        tx.query('DELETE FROM tenantry.users WHERE tenant_id = $1 AND id = $2', [
          principal.tenantId,
          current.id,
        ]),
      );
      await recordAudit(tx, principal.context, {
        action: 'user.delete',
        outcome: 'success',
        tenantId: principal.tenantId,
        target: current.id,
        details: { email: current.email, keysRevoked: keyIds.length },
      });
      return keyIds;
    });
    for (const keyId of revoked) this.#bus.applied({ kind: 'key', tenantId: principal.tenantId, keyId });
  }

  /** Ends the user's sessions and issues a one-time set-up token for a new password. */
  async resetPassword(principal: Principal, id: string): Promise<{ setupToken: string; warning: string }> {
    requirePermission(principal, 'users:manage');
    const setup = newSetupToken();
    await accessChange(this.#db, this.#bus, principal.tenantId, async (tx) => {
      const current = await findUser(tx, principal.tenantId, id);
      // Whoever holds the token becomes the user: only someone at least as powerful may ask.
      await this.#assertCovers(tx, principal, current.id, 'resetting this password');
      await tx.query(
        `UPDATE tenantry.users SET password_hash = NULL, setup_token_hash = $2, setup_expires_at = $3, updated_at = now()
          WHERE id = $1`,
        [current.id, setup.hash, new Date(Date.now() + SETUP_TTL_MS)],
      );
      await revokeUserSessions(tx, current.id);
      await recordAudit(tx, principal.context, {
        action: 'user.reset_password',
        outcome: 'success',
        tenantId: principal.tenantId,
        target: current.id,
      });
    });
    return { setupToken: setup.token, warning: SETUP_TOKEN_WARNING };
  }

  /** A user without a tenant who may use the admin routes. */
  async createGlobalAdmin(
    context: ActionContext,
    input: { email: unknown; name?: string | undefined; password?: string | undefined },
  ): Promise<CreatedUser> {
    const email = normaliseEmail(input.email);
    if (input.password !== undefined) checkPasswordPolicy(input.password);
    const passwordHash = input.password === undefined ? null : await hashPassword(input.password);
    const setup = passwordHash === null ? newSetupToken() : undefined;
    const row = await this.#db.transaction(async (tx) => {
      const id = uuidv7();
      await tx
        .query(
          `INSERT INTO tenantry.users (id, tenant_id, email, name, status, global_admin, password_hash, setup_token_hash, setup_expires_at)
           VALUES ($1, NULL, $2, $3, 'active', true, $4, $5, $6)`,
          [
            id,
            email,
            input.name ?? null,
            passwordHash,
            setup?.hash ?? null,
            setup ? new Date(Date.now() + SETUP_TTL_MS) : null,
          ],
        )
        .catch(emailTaken);
      await recordAudit(tx, context, {
        action: 'user.create_global_admin',
        outcome: 'success',
        target: id,
        details: { email },
      });
      const { rows } = await tx.query<UserRow>(`SELECT ${USER_COLUMNS} FROM tenantry.users WHERE id = $1`, [
        id,
      ]);
      return rows[0]!;
    });
    const user = await this.#view(this.#db, row);
    return setup ? { user, setupToken: setup.token, warning: SETUP_TOKEN_WARNING } : { user };
  }

  async countGlobalAdmins(): Promise<number> {
    const { rows } = await this.#db.query<{ count: number }>(
      "SELECT count(*)::int AS count FROM tenantry.users WHERE global_admin AND status = 'active'",
    );
    return Number(rows[0]?.count ?? 0);
  }

  /** Sets the password of the account a set-up token was issued for; the token then stops working. */
  async completeSetup(token: string, password: string, context: ActionContext): Promise<void> {
    checkPasswordPolicy(password);
    const passwordHash = await hashPassword(password);
    const tokenHash = hash('sha256', token, 'buffer');
    const { rows } = await this.#db.query<{ id: string; tenant_id: string | null }>(
      `UPDATE tenantry.users SET password_hash = $2, setup_token_hash = NULL, setup_expires_at = NULL, updated_at = now()
        WHERE setup_token_hash = $1 AND setup_expires_at > now() AND status = 'active'
        RETURNING id, tenant_id`,
      [tokenHash, passwordHash],
    );
    if (!rows[0])
      throw new TenantryError('invalid_credentials', 'the set-up token is not valid or has expired');
    await recordAudit(this.#db, context, {
      action: 'user.setup',
      outcome: 'success',
      tenantId: rows[0].tenant_id ?? undefined,
      target: rows[0].id,
    });
  }

  /** Refuses unless the principal holds every permission the user holds. */
  async #assertCovers(tx: Queryable, principal: Principal, userId: string, what: string): Promise<void> {
    if (principal.userId === userId) return;
    const target = await this.#access.grantedPermissions(principal.tenantId, userId, tx);
    assertCanGrant(principal, target, what);
  }

  async #setRoles(
    tx: Queryable,
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
      union(added.map((role) => this.#access.permissionsOfRole(rowGrant(role)))),
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

  async #setGroups(
    tx: Queryable,
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
        await groupPermissions(tx, this.#access, tenantId, group.id),
        `adding to group ${group.name}`,
      );
    }
    await tx.query('DELETE FROM tenantry.group_members WHERE tenant_id = $1 AND user_id = $2', [
      tenantId,
      userId,
    ]);
    for (const groupId of wanted.keys()) {
      await tx.query(
        'INSERT INTO tenantry.group_members (tenant_id, group_id, user_id) VALUES ($1, $2, $3)',
        [tenantId, groupId, userId],
      );
    }
  }

  async #view(db: Queryable, row: UserRow): Promise<UserView> {
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
}

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

function newSetupToken(): { token: string; hash: Buffer } {
  const token = `${SETUP_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { token, hash: hash('sha256', token, 'buffer') };
}

function emailTaken(error: unknown): never {
  if (isSqlState(error, 'UNIQUE_VIOLATION'))
    throw new TenantryError('conflict', 'an account with this email exists already', { field: 'email' });
  throw error;
}
