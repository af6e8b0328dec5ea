import { v7 as uuidv7 } from 'uuid';
import type { ConnectionPool, Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { QuotaExceededError } from '../runtime/quota.js';
import type { AccessControl } from './access-control.js';
import { isUuid } from './access-names.js';
import { revokeKeysMadeBy } from './api-key-store.js';
import { accessChange, keepingAnAdmin, type Principal, requirePermission } from './delegation.js';
import { countGlobalAdmins, createGlobalAdmin, listGlobalAdmins } from './global-admins.js';
import { revokeUserSessions } from './session-store.js';
import {
  type CreatedUser,
  completeSetup,
  createdUser,
  initialCredentials,
  newSetupToken,
  SETUP_TOKEN_WARNING,
  setupExpiry,
} from './setup-token.js';
import { canonicalEmail, emailTaken, normaliseEmail } from './user-email.js';
import { assertCoversUser, setUserGroups, setUserRoles } from './user-memberships.js';
import {
  countTenantUsers,
  findUser,
  loadUserView,
  USER_COLUMNS,
  type UserRow,
  type UserStatus,
  type UserView,
} from './user-rows.js';

export type { CreatedUser } from './setup-token.js';
export { normaliseEmail } from './user-email.js';
export type { UserStatus, UserView } from './user-rows.js';

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

type UserQuota = (tenantId: string) => Promise<{ max: number; slug: string } | undefined>;

/**
 * Users of tenants, and global admins (users without a tenant). Every change inside a tenant
 * goes through the delegation rule: the principal grants nothing it does not hold, and the last
 * tenant admin is never removed.
 */
export class UserDirectory {
  readonly #db: ConnectionPool;
  readonly #access: AccessControl;
  readonly #bus: ChangeBus;
  readonly #quota: UserQuota;

  constructor(
    db: ConnectionPool,
    access: AccessControl,
    bus: ChangeBus,
    quota: UserQuota = async () => undefined,
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
    return Promise.all(rows.map((row) => loadUserView(this.#db, row)));
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
    return loadUserView(this.#db, rows[0]);
  }

  async listGlobalAdmins(): Promise<UserView[]> {
    return listGlobalAdmins(this.#db);
  }

  /** Any user by id, whatever its tenant (for the user's own session). */
  async find(id: string): Promise<UserView | undefined> {
    if (!isUuid(id)) return undefined;
    const { rows } = await this.#db.query<UserRow>(
      `SELECT ${USER_COLUMNS} FROM tenantry.users WHERE id = $1`,
      [id],
    );
    return rows[0] && loadUserView(this.#db, rows[0]);
  }

  async get(tenantId: string, id: string): Promise<UserView> {
    return loadUserView(this.#db, await findUser(this.#db, tenantId, id));
  }

  async create(principal: Principal, input: UserInput): Promise<CreatedUser> {
    requirePermission(principal, 'users:manage');
    const email = normaliseEmail(input.email);
    const { passwordHash, setup } = await initialCredentials(input.password);
    const tenantId = principal.tenantId;
    const quota = await this.#quota(tenantId);
    const row = await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      tenantId,
      { action: 'user.create' },
      async (tx, record) => {
        // Counted under the tenant's access lock: two creations cannot both take the last place.
        if (quota) await assertRoomForUser(tx, tenantId, quota);
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
              setup ? setupExpiry() : null,
            ],
          )
          .catch(emailTaken);
        const { rows: defaults } = await tx.query<{ id: string }>(
          'SELECT id FROM tenantry.roles WHERE tenant_id = $1 AND is_default',
          [tenantId],
        );
        const roles = input.roles ?? defaults.map((role) => role.id);
        await setUserRoles(tx, this.#access, principal, id, roles);
        await setUserGroups(tx, this.#access, principal, id, input.groups ?? []);
        record.describe({
          tenantId,
          target: id,
          details: { email, roles: input.roles, groups: input.groups },
        });
        return findUser(tx, tenantId, id);
      },
    );
    return createdUser(await loadUserView(this.#db, row), setup);
  }

  async update(principal: Principal, id: string, input: UserInput): Promise<UserView> {
    requirePermission(principal, 'users:manage');
    if (input.password !== undefined)
      throw new TenantryError('validation_failed', 'passwords are set with a set-up token (reset-password)', {
        field: 'password',
      });
    const email = input.email === undefined ? undefined : normaliseEmail(input.email);
    const tenantId = principal.tenantId;
    const row = await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      tenantId,
      { action: 'user.update' },
      async (tx, record) => {
        const current = await findUser(tx, tenantId, id);
        await this.#assertMayUpdate(tx, principal, current, email, input);
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
          if (input.roles !== undefined)
            await setUserRoles(tx, this.#access, principal, current.id, input.roles);
          if (input.groups !== undefined)
            await setUserGroups(tx, this.#access, principal, current.id, input.groups);
        });
        if (input.status === 'inactive' && current.status === 'active')
          await revokeUserSessions(tx, current.id);
        record.describe({
          action: input.status === 'inactive' ? 'user.deactivate' : 'user.update',
          tenantId,
          target: current.id,
          details: { email, roles: input.roles, groups: input.groups, status: input.status },
        });
        return findUser(tx, tenantId, current.id);
      },
    );
    return loadUserView(this.#db, row);
  }

  async delete(principal: Principal, id: string): Promise<void> {
    requirePermission(principal, 'users:manage');
    await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'user.delete' },
      async (tx, record) => {
        const current = await findUser(tx, principal.tenantId, id);
        await assertCoversUser(tx, this.#access, principal, current.id, 'deleting this user');
        // Keys made by the user end with it (a deleted maker would no longer bound their scope).
        const keyIds = await revokeKeysMadeBy(tx, principal.tenantId, current.id);
        for (const keyId of keyIds) record.announce({ kind: 'key', tenantId: principal.tenantId, keyId });
        await keepingAnAdmin(tx, principal.tenantId, () =>
          tx.query('DELETE FROM tenantry.users WHERE tenant_id = $1 AND id = $2', [
            principal.tenantId,
            current.id,
          ]),
        );
        record.describe({
          target: current.id,
          details: { email: current.email, keysRevoked: keyIds.length },
        });
      },
    );
  }

  /** Ends the user's sessions and issues a one-time set-up token for a new password. */
  async resetPassword(principal: Principal, id: string): Promise<{ setupToken: string; warning: string }> {
    requirePermission(principal, 'users:manage');
    const setup = newSetupToken();
    await accessChange(
      this.#db,
      this.#bus,
      principal.context,
      principal.tenantId,
      { action: 'user.reset_password' },
      async (tx, record) => {
        const current = await findUser(tx, principal.tenantId, id);
        // Whoever holds the token becomes the user: only someone at least as powerful may ask.
        await assertCoversUser(tx, this.#access, principal, current.id, 'resetting this password');
        await tx.query(
          `UPDATE tenantry.users SET password_hash = NULL, setup_token_hash = $2, setup_expires_at = $3, updated_at = now()
          WHERE id = $1`,
          [current.id, setup.hash, setupExpiry()],
        );
        await revokeUserSessions(tx, current.id);
        record.describe({ target: current.id });
      },
    );
    return { setupToken: setup.token, warning: SETUP_TOKEN_WARNING };
  }

  /** A user without a tenant who may use the admin routes. */
  async createGlobalAdmin(
    context: ActionContext,
    input: { email: unknown; name?: string | undefined; password?: string | undefined },
  ): Promise<CreatedUser> {
    return createGlobalAdmin(this.#db, this.#bus, context, input);
  }

  async countGlobalAdmins(): Promise<number> {
    return countGlobalAdmins(this.#db);
  }

  /** Sets the password of the account a set-up token was issued for; the token then stops working. */
  async completeSetup(token: string, password: string, context: ActionContext): Promise<void> {
    return completeSetup(this.#db, this.#bus, token, password, context);
  }

  async #assertMayUpdate(
    tx: Queryable,
    principal: Principal,
    current: UserRow,
    email: string | undefined,
    input: UserInput,
  ): Promise<void> {
    // Changing someone's login name lets the principal take the account over: only for
    // someone who holds at least everything the user holds.
    if (email !== undefined && email !== current.email)
      await assertCoversUser(tx, this.#access, principal, current.id, 'changing this email');
    // Deactivating, reactivating, or changing the roles and groups of someone who holds more
    // than the principal would let it disarm or take over that account.
    if (input.status !== undefined && input.status !== current.status)
      await assertCoversUser(tx, this.#access, principal, current.id, 'changing this user’s status');
    if (input.roles !== undefined || input.groups !== undefined)
      await assertCoversUser(tx, this.#access, principal, current.id, 'changing this user’s roles or groups');
  }
}

async function assertRoomForUser(
  tx: Queryable,
  tenantId: string,
  quota: { max: number; slug: string },
): Promise<void> {
  const users = await countTenantUsers(tx, tenantId);
  if (users >= quota.max) {
    throw new QuotaExceededError(
      quota.slug,
      'maxUsers',
      `this tenant may have ${quota.max} users (it has ${users})`,
    );
  }
}
