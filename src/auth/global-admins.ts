import { v7 as uuidv7 } from 'uuid';
import type { ConnectionPool } from '../db/database.js';
import type { ActionContext } from '../runtime/actor.js';
import { auditedChange } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { type CreatedUser, createdUser, initialCredentials, setupExpiry } from './setup-token.js';
import { emailTaken, normaliseEmail } from './user-email.js';
import { loadUserView, USER_COLUMNS, type UserRow, type UserView } from './user-rows.js';

export interface GlobalAdminInput {
  readonly email: unknown;
  readonly name?: string | undefined;
  readonly password?: string | undefined;
}

export async function listGlobalAdmins(db: ConnectionPool): Promise<UserView[]> {
  const { rows } = await db.query<UserRow>(
    `SELECT ${USER_COLUMNS} FROM tenantry.users WHERE tenant_id IS NULL ORDER BY email`,
  );
  return Promise.all(rows.map((row) => loadUserView(db, row)));
}

/** A user without a tenant who may use the admin routes. */
export async function createGlobalAdmin(
  db: ConnectionPool,
  bus: ChangeBus,
  context: ActionContext,
  input: GlobalAdminInput,
): Promise<CreatedUser> {
  const email = normaliseEmail(input.email);
  const { passwordHash, setup } = await initialCredentials(input.password);
  const id = uuidv7();
  const audit = { action: 'user.create_global_admin', target: id, details: { email } };
  const row = await auditedChange({ bus }, db, context, audit, async (tx) => {
    await tx
      .query(
        `INSERT INTO tenantry.users (id, tenant_id, email, name, status, global_admin, password_hash, setup_token_hash, setup_expires_at)
           VALUES ($1, NULL, $2, $3, 'active', true, $4, $5, $6)`,
        [id, email, input.name ?? null, passwordHash, setup?.hash ?? null, setup ? setupExpiry() : null],
      )
      .catch(emailTaken);
    const { rows } = await tx.query<UserRow>(`SELECT ${USER_COLUMNS} FROM tenantry.users WHERE id = $1`, [
      id,
    ]);
    return rows[0]!;
  });
  return createdUser(await loadUserView(db, row), setup);
}

export async function countGlobalAdmins(db: ConnectionPool): Promise<number> {
  const { rows } = await db.query<{ count: number }>(
    "SELECT count(*)::int AS count FROM tenantry.users WHERE global_admin AND status = 'active'",
  );
  return Number(rows[0]?.count ?? 0);
}
