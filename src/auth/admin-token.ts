import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Queryable } from '../db/database.js';

const SETTING_KEY = 'admin_token_sha256';

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

export interface AdminTokenSetup {
  readonly guard: AdminTokenGuard;
  /** Set only when this call generated the token: print it once, it is stored only as a hash. */
  readonly generatedToken?: string;
}

/**
 * Checks the operator's admin token. A configured token (TENANTRY_ADMIN_TOKEN) wins; otherwise
 * the first start generates one, stores its SHA-256 (the token has 256 random bits, so a fast
 * hash suffices) and hands it out once.
 */
export class AdminTokenGuard {
  readonly #digest: Buffer;

  private constructor(digest: Buffer) {
    this.#digest = digest;
  }

  static async setUp(db: Queryable, configured: string | undefined): Promise<AdminTokenSetup> {
    if (configured !== undefined) return { guard: new AdminTokenGuard(sha256(configured)) };
    const token = `tny_admin_${randomBytes(32).toString('base64url')}`;
    // Two processes starting at once: one insert wins, the other reads what it stored.
    const inserted = await db.query(
      `INSERT INTO tenantry.settings (key, value) VALUES ($1, to_jsonb($2::text))
       ON CONFLICT (key) DO NOTHING RETURNING key`,
      [SETTING_KEY, sha256(token).toString('hex')],
    );
    if (inserted.rowCount > 0) return { guard: new AdminTokenGuard(sha256(token)), generatedToken: token };
    const { rows } = await db.query<{ digest: string }>(
      "SELECT value #>> '{}' AS digest FROM tenantry.settings WHERE key = $1",
      [SETTING_KEY],
    );
    return { guard: new AdminTokenGuard(Buffer.from(rows[0]?.digest ?? '', 'hex')) };
  }

  /** Replaces the stored token with a new one and returns it (shown once). */
  static async rotate(db: Queryable): Promise<string> {
    const token = `tny_admin_${randomBytes(32).toString('base64url')}`;
    await db.query(
      `INSERT INTO tenantry.settings (key, value) VALUES ($1, to_jsonb($2::text))
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()`,
      [SETTING_KEY, sha256(token).toString('hex')],
    );
    return token;
  }

  verify(presented: string | undefined): boolean {
    if (presented === undefined || presented.length === 0 || presented.length > 512) return false;
    return timingSafeEqual(sha256(presented), this.#digest);
  }
}
