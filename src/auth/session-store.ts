import { LRUCache } from 'lru-cache';
import { v7 as uuidv7 } from 'uuid';
import type { Queryable } from '../db/database.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { LastUsedRecorder } from './last-used-recorder.js';
import {
  generateSessionToken,
  hashSessionToken,
  isSessionTokenShaped,
  sessionCacheKey,
} from './session-token.js';

/** A live session as the request path needs it. */
export interface VerifiedSession {
  readonly id: string;
  readonly userId: string;
  /** The user's tenant; null for a user without one (a global admin). */
  readonly tenantId: string | null;
  readonly globalAdmin: boolean;
  readonly expiresAt: Date;
}

export interface IssuedSession {
  readonly token: string;
  readonly session: VerifiedSession;
}

export interface SessionStoreOptions {
  /** Reads and writes of sessions: the owner's pool (the runtime role reads no token hash). */
  readonly owner: Queryable;
  readonly bus: ChangeBus;
  readonly ttlSeconds: number;
  /** Verified sessions kept in memory (by token hash, never the token). */
  readonly cacheSize?: number;
  readonly onBackgroundError?: (error: unknown) => void;
}

interface SessionRow {
  [column: string]: unknown;
  id: string;
  user_id: string;
  tenant_id: string | null;
  global_admin: boolean;
  expires_at: Date | string;
}

/**
 * Opaque, expiring, revocable sessions. A verified session is cached for at most a minute and
 * dropped at once when its user's access changes (deactivation, logout elsewhere, role changes)
 * in any process, through the ChangeBus.
 */
export class SessionStore {
  readonly #options: SessionStoreOptions;
  readonly #cache: LRUCache<string, VerifiedSession>;
  readonly #lastUsed: LastUsedRecorder;
  #generation = 0;

  constructor(options: SessionStoreOptions) {
    this.#options = options;
    this.#cache = new LRUCache({ max: options.cacheSize ?? 50_000, ttl: 60_000 });
    this.#lastUsed = new LastUsedRecorder({
      // Locked in id order, locked rows skipped (a logout in progress): see `touchKeys`.
      write: (ids) =>
        options.owner
          .query(
            `UPDATE tenantry.sessions SET last_used_at = now()
              WHERE id IN (SELECT id FROM tenantry.sessions WHERE id = ANY(string_to_array($1, ',')::uuid[])
                            ORDER BY id FOR UPDATE SKIP LOCKED)`,
            [ids.join(',')],
          )
          .then(() => undefined),
      ...(options.onBackgroundError ? { onError: options.onBackgroundError } : {}),
    });
    options.bus.subscribe((change) => {
      this.#generation += 1;
      if (change === 'all') this.#cache.clear();
      else if (change.kind === 'access' || change.kind === 'tenant') {
        const userId = change.kind === 'access' ? change.userId : undefined;
        for (const [key, session] of this.#cache.entries()) {
          if (userId !== undefined ? session.userId === userId : session.tenantId === change.tenantId)
            this.#cache.delete(key);
        }
      }
    });
  }

  get ttlSeconds(): number {
    return this.#options.ttlSeconds;
  }

  async create(
    tx: Queryable,
    user: { id: string; tenantId: string | null; globalAdmin: boolean },
    client: { address?: string | undefined; userAgent?: string | undefined },
  ): Promise<IssuedSession> {
    const { token, hash } = generateSessionToken();
    const id = uuidv7();
    const expiresAt = new Date(Date.now() + this.#options.ttlSeconds * 1000);
    await tx.query(
      `INSERT INTO tenantry.sessions (id, token_hash, user_id, tenant_id, expires_at, client_address, user_agent)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        id,
        hash,
        user.id,
        user.tenantId,
        expiresAt,
        client.address ?? null,
        client.userAgent?.slice(0, 500) ?? null,
      ],
    );
    return {
      token,
      session: { id, userId: user.id, tenantId: user.tenantId, globalAdmin: user.globalAdmin, expiresAt },
    };
  }

  /** The answer from memory alone; undefined means "ask `verify`". */
  verifyCached(token: string): VerifiedSession | undefined {
    if (!this.#options.bus.reliable || !isSessionTokenShaped(token)) return undefined;
    const key = sessionCacheKey(token);
    const session = this.#cache.get(key);
    if (!session) return undefined;
    if (session.expiresAt.getTime() <= Date.now()) {
      this.#cache.delete(key);
      return undefined;
    }
    this.#touch(session.id);
    return session;
  }

  /** A live session of an active user, or undefined (malformed, unknown, expired, revoked). */
  async verify(token: string): Promise<VerifiedSession | undefined> {
    if (!isSessionTokenShaped(token)) return undefined;
    const cached = this.verifyCached(token);
    if (cached) return cached;
    const hash = hashSessionToken(token);
    const generation = this.#generation;
    const { rows } = await this.#options.owner.query<SessionRow>(
      `SELECT s.id, s.user_id, s.tenant_id, u.global_admin, s.expires_at
         FROM tenantry.sessions s JOIN tenantry.users u ON u.id = s.user_id
        WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() AND u.status = 'active'`,
      [hash],
    );
    const row = rows[0];
    if (!row) return undefined;
    const session: VerifiedSession = Object.freeze({
      id: row.id,
      userId: row.user_id,
      tenantId: row.tenant_id,
      globalAdmin: row.global_admin,
      expiresAt: new Date(row.expires_at),
    });
    if (generation === this.#generation && this.#options.bus.reliable)
      this.#cache.set(hash.toString('base64url'), session);
    this.#touch(session.id);
    return session;
  }

  /** Ends one session (logout). */
  async revoke(
    tx: Queryable,
    sessionId: string,
  ): Promise<{ userId: string; tenantId: string | null } | undefined> {
    const { rows } = await tx.query<{ user_id: string; tenant_id: string | null }>(
      `UPDATE tenantry.sessions SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL
       RETURNING user_id, tenant_id`,
      [sessionId],
    );
    return rows[0] && { userId: rows[0].user_id, tenantId: rows[0].tenant_id };
  }

  /** Writes the session uses not recorded yet, now (tests). */
  flushLastUsed(): Promise<void> {
    return this.#lastUsed.flush();
  }

  /** Writes the session uses not recorded yet and records no more (before the database closes). */
  close(): Promise<void> {
    return this.#lastUsed.close();
  }

  #touch(sessionId: string): void {
    this.#lastUsed.used(sessionId);
  }
}

/** Ends every session of a user, in the caller's transaction (deactivation, password reset). */
export async function revokeUserSessions(tx: Queryable, userId: string): Promise<number> {
  const { rowCount } = await tx.query(
    'UPDATE tenantry.sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL',
    [userId],
  );
  return rowCount ?? 0;
}

/** Ends every session of a tenant's users (the tenant deactivated or deleted). */
export async function revokeTenantSessions(tx: Queryable, tenantId: string): Promise<number> {
  const { rowCount } = await tx.query(
    'UPDATE tenantry.sessions SET revoked_at = now() WHERE tenant_id = $1 AND revoked_at IS NULL',
    [tenantId],
  );
  return rowCount ?? 0;
}
