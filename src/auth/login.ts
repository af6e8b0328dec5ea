import type { ConnectionPool } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import type { FailureLimiter } from '../runtime/failure-limiter.js';
import { decoyPasswordHash, PASSWORD_MAX_LENGTH, verifyPassword } from './password.js';
import type { IssuedSession, SessionStore } from './session-store.js';
import { canonicalEmail } from './user-email.js';

export interface LoginAttempt {
  readonly email: unknown;
  readonly password: unknown;
  /**
   * The tenant the request itself names (host or API key), or undefined when it names none:
   * then the tenant follows from the user.
   */
  readonly requestTenantId: string | undefined;
  readonly userAgent?: string | undefined;
}

export interface LoginOptions {
  readonly db: ConnectionPool;
  readonly sessions: SessionStore;
  /** Failures per account (by login name, whether or not it exists). */
  readonly accountFailures: FailureLimiter;
  /** Failures per client address. */
  readonly addressFailures: FailureLimiter;
  /** Called for each refusal by a limiter (metrics). */
  readonly onLimited?: () => void;
}

interface LoginRow {
  [column: string]: unknown;
  id: string;
  tenant_id: string | null;
  global_admin: boolean;
  password_hash: string | null;
  user_status: string;
  tenant_status: string | null;
}

const REFUSED = 'the email or the password is not correct';

/**
 * Password login. Every refusal looks the same and costs one password hash, whether the account
 * does not exist, has no password yet, is inactive, belongs to another tenant than the one the
 * request names, or the password is wrong: neither the answer nor its timing tells which.
 */
export class LoginService {
  readonly #options: LoginOptions;
  #decoy: Promise<string> | undefined;

  constructor(options: LoginOptions) {
    this.#options = options;
  }

  async login(attempt: LoginAttempt, context: ActionContext): Promise<IssuedSession> {
    const email = typeof attempt.email === 'string' ? canonicalEmail(attempt.email) : '';
    const password = typeof attempt.password === 'string' ? attempt.password : '';
    if (email === '' || password === '' || email.length > 254 || password.length > PASSWORD_MAX_LENGTH * 4) {
      throw new TenantryError('validation_failed', 'send an email and a password', {
        field: email === '' ? 'email' : 'password',
      });
    }
    const address = context.clientAddress ?? 'unknown';
    const tries = await Promise.all([
      this.#options.accountFailures.begin(email),
      this.#options.addressFailures.begin(address),
    ]);
    const endTries = (failed: boolean) => Promise.all(tries.map((attempt) => attempt.end(failed)));
    const wait = Math.max(...tries.map((attempt) => attempt.waitMs));
    if (wait > 0) {
      await endTries(false);
      this.#options.onLimited?.();
      throw new TenantryError('rate_limited', 'too many failed logins: try again later', {
        retryAfterSeconds: Math.ceil(wait / 1000),
      });
    }
    try {
      return await this.#checkAndOpen(attempt, email, password, context, endTries);
    } finally {
      // Ends the tries a refusal has not ended (counted as failures) already.
      await endTries(false);
    }
  }

  async #checkAndOpen(
    attempt: LoginAttempt,
    email: string,
    password: string,
    context: ActionContext,
    endTries: (failed: boolean) => Promise<unknown>,
  ): Promise<IssuedSession> {
    const { rows } = await this.#options.db.query<LoginRow>(
      `SELECT u.id, u.tenant_id, u.global_admin, u.password_hash, u.status AS user_status, t.status AS tenant_status
         FROM tenantry.users u LEFT JOIN tenantry.tenants t ON t.id = u.tenant_id
        WHERE u.email = $1`,
      [email],
    );
    const row = rows[0];
    const matches = await verifyPassword(password, row?.password_hash ?? (await this.#decoyHash()));
    const allowed =
      row !== undefined &&
      row.password_hash !== null &&
      matches &&
      row.user_status === 'active' &&
      (row.tenant_id === null || row.tenant_status === 'active') &&
      (attempt.requestTenantId === undefined || attempt.requestTenantId === row.tenant_id);
    if (!row || !allowed) {
      await endTries(true);
      await recordAudit(this.#options.db, context, {
        action: 'auth.login',
        outcome: 'failure',
        tenantId: attempt.requestTenantId ?? row?.tenant_id ?? undefined,
        target: row?.id ?? email,
        details:
          row && matches && attempt.requestTenantId !== undefined && attempt.requestTenantId !== row.tenant_id
            ? { reason: 'other_tenant' }
            : {},
      });
      throw new TenantryError('invalid_credentials', REFUSED);
    }
    await this.#options.accountFailures.reset(email);
    return this.#options.db.transaction(async (tx) => {
      const issued = await this.#options.sessions.create(
        tx,
        { id: row.id, tenantId: row.tenant_id, globalAdmin: row.global_admin },
        { address: context.clientAddress, userAgent: attempt.userAgent },
      );
      await tx.query('UPDATE tenantry.users SET last_login_at = now() WHERE id = $1', [row.id]);
      await recordAudit(
        tx,
        { ...context, actor: { kind: 'user', id: row.id } },
        {
          action: 'auth.login',
          outcome: 'success',
          tenantId: row.tenant_id ?? undefined,
          target: issued.session.id,
        },
      );
      return issued;
    });
  }

  #decoyHash(): Promise<string> {
    this.#decoy ??= decoyPasswordHash();
    return this.#decoy;
  }
}
