import { hash, randomBytes } from 'node:crypto';
import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { auditedChange, type Transactional } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { checkPasswordPolicy, hashPassword } from './password.js';
import type { UserView } from './user-rows.js';

const SETUP_TOKEN_PREFIX = 'tnu_';
const SETUP_TTL_MS = 7 * 86_400_000;
export const SETUP_TOKEN_WARNING =
  'Give this set-up token to the user now: it is shown only once, sets a password once, and expires in 7 days.';

/** A user made without a password: the one-time set-up token is shown once, stored as a hash. */
export interface CreatedUser {
  readonly user: UserView;
  readonly setupToken?: string;
  readonly warning?: string;
}

export interface SetupToken {
  readonly token: string;
  readonly hash: Buffer;
}

export function newSetupToken(): SetupToken {
  const token = `${SETUP_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { token, hash: hash('sha256', token, 'buffer') };
}

export function setupExpiry(): Date {
  return new Date(Date.now() + SETUP_TTL_MS);
}

/** A new account's password hash, or, without a password, the set-up token that will set it. */
export async function initialCredentials(
  password: string | undefined,
): Promise<{ passwordHash: string | null; setup: SetupToken | undefined }> {
  if (password !== undefined) checkPasswordPolicy(password);
  const passwordHash = password === undefined ? null : await hashPassword(password);
  const setup = passwordHash === null ? newSetupToken() : undefined;
  return { passwordHash, setup };
}

export function createdUser(user: UserView, setup: SetupToken | undefined): CreatedUser {
  return setup ? { user, setupToken: setup.token, warning: SETUP_TOKEN_WARNING } : { user };
}

/** Sets the password of the account a set-up token was issued for; the token then stops working. */
export async function completeSetup(
  db: Transactional & Queryable,
  bus: ChangeBus,
  token: string,
  password: string,
  context: ActionContext,
): Promise<void> {
  checkPasswordPolicy(password);
  const passwordHash = await hashPassword(password);
  const tokenHash = hash('sha256', token, 'buffer');
  await auditedChange({ bus }, db, context, { action: 'user.setup' }, async (tx, record) => {
    const { rows } = await tx.query<{ id: string; tenant_id: string | null }>(
      `UPDATE tenantry.users SET password_hash = $2, setup_token_hash = NULL, setup_expires_at = NULL, updated_at = now()
          WHERE setup_token_hash = $1 AND setup_expires_at > now() AND status = 'active'
          RETURNING id, tenant_id`,
      [tokenHash, passwordHash],
    );
    if (!rows[0])
      throw new TenantryError('invalid_credentials', 'the set-up token is not valid or has expired');
    record.describe({ tenantId: rows[0].tenant_id ?? undefined, target: rows[0].id });
  });
}
