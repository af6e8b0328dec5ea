import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { Queryable } from '../db/database.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import {
  hashSecret,
  parseApiKey,
  type StoredKeyHash,
  VerifiedSecretDigester,
  verifySecret,
} from './api-key.js';
import { findKeyForVerification, touchKeys } from './api-key-store.js';
import { LastUsedRecorder } from './last-used-recorder.js';

/** What a key may do, beyond its tenant: null permissions mean every tenant permission. */
export interface KeyScope {
  readonly permissions: readonly string[] | null;
  /** The user who made it: the key never holds more than that user holds now. */
  readonly createdBy: string | null;
}

export interface VerifiedKey {
  readonly tenantId: string;
  readonly keyId: string;
  readonly scope: KeyScope;
}

const UNSCOPED: KeyScope = Object.freeze({ permissions: null, createdBy: null });

interface CachedKey {
  readonly verified: VerifiedKey;
  readonly digest: string;
  /**
   * The stored hash the secret was checked against. While the key's row still holds it, the
   * secret still matches it: an entry past its time is renewed by reading the row, without the
   * slow hash.
   */
  readonly stored: StoredKeyHash;
  /** Epoch ms after which the key no longer authenticates (it expires); Infinity when never. */
  readonly expiresAt: number;
  /** When the key's row was last read; past `cacheTtlSeconds` the row is read again before use. */
  readonly checkedAt: number;
  /** When this process last recorded the key's use (see `touchIntervalMs`). */
  touchedAt: number;
}

export interface ApiKeyVerifierOptions {
  readonly db: Queryable;
  readonly bus: ChangeBus;
  readonly iterations: number;
  readonly cacheSize: number;
  readonly cacheTtlSeconds: number;
  /** How often `last_used_at` is written per key at most. */
  readonly touchIntervalMs?: number;
  readonly onBackgroundError?: (error: unknown) => void;
}

/**
 * Verifies presented API keys. The slow PBKDF2 check runs once per key and process; then a
 * keyed digest of the secret (never the plaintext) answers in microseconds until the key or its
 * tenant changes. Every failure looks the same to the caller and costs about one slow hash, so
 * neither the answer nor its timing tells whether a key id exists.
 */
export class ApiKeyVerifier {
  readonly #options: ApiKeyVerifierOptions;
  readonly #cache: LRUCache<string, CachedKey> | undefined;
  readonly #recheckAfterMs: number;
  readonly #digester = new VerifiedSecretDigester();
  readonly #lastUsed: LastUsedRecorder;
  readonly #decoy: Promise<Awaited<ReturnType<typeof hashSecret>>>;
  /** Checks running now, by presented key: concurrent requests with one new key pay one slow hash. */
  readonly #inFlight = new Map<string, Promise<VerifiedKey | undefined>>();
  /** Bumped on every invalidation, so a lookup that raced with one does not fill the cache. */
  #generation = 0;

  constructor(options: ApiKeyVerifierOptions) {
    this.#options = options;
    this.#cache =
      options.cacheSize > 0 ? new LRUCache<string, CachedKey>({ max: options.cacheSize }) : undefined;
    this.#recheckAfterMs = options.cacheTtlSeconds * 1000;
    this.#lastUsed = new LastUsedRecorder({
      write: (keyIds) => touchKeys(options.db, keyIds),
      ...(options.touchIntervalMs !== undefined ? { intervalMs: options.touchIntervalMs } : {}),
      ...(options.onBackgroundError ? { onError: options.onBackgroundError } : {}),
    });
    this.#decoy = hashSecret(randomBytes(32).toString('base64url'), options.iterations);
    options.bus.subscribe((change) => {
      this.#generation += 1;
      if (change === 'all') this.#cache?.clear();
      else if (change.kind === 'key') this.#cache?.delete(change.keyId);
      // A tenant change keeps its keys cached: whether the tenant may be served is checked on
      // every request against the tenant cache, and deletion revokes (and announces) its keys.
    });
  }

  /** The answer from the cache alone, synchronously; undefined means "ask `verify`". */
  verifyCached(presented: string): VerifiedKey | undefined {
    if (!this.#cache || !this.#options.bus.reliable) return undefined;
    const parsed = parseApiKey(presented);
    if (!parsed) return undefined;
    const cached = this.#cache.get(parsed.keyId);
    if (!cached || !this.#digester.matches(parsed.secret, cached.digest) || !this.#fresh(cached))
      return undefined;
    this.#touch(parsed.keyId, cached);
    return cached.verified;
  }

  #fresh(cached: CachedKey): boolean {
    const now = Date.now();
    return now < cached.expiresAt && now - cached.checkedAt < this.#recheckAfterMs;
  }

  async verify(presented: string): Promise<VerifiedKey | undefined> {
    const running = this.#inFlight.get(presented);
    if (running) return running;
    const check = this.#verify(presented).finally(() => this.#inFlight.delete(presented));
    this.#inFlight.set(presented, check);
    return check;
  }

  async #verify(presented: string): Promise<VerifiedKey | undefined> {
    const parsed = parseApiKey(presented);
    if (!parsed) {
      await this.#spendDecoyTime(presented);
      return undefined;
    }
    const cached = this.#options.bus.reliable ? this.#cache?.get(parsed.keyId) : undefined;
    // The same secret as a past check: if the row still holds the hash it matched, it still does.
    const checkedBefore = cached && this.#digester.matches(parsed.secret, cached.digest) ? cached : undefined;
    if (checkedBefore && this.#fresh(checkedBefore)) {
      this.#touch(parsed.keyId, checkedBefore);
      return checkedBefore.verified;
    }
    const generation = this.#generation;
    const row = await findKeyForVerification(this.#options.db, parsed.keyId);
    if (!row?.usable) {
      if (cached) this.#cache?.delete(parsed.keyId);
      await this.#spendDecoyTime(parsed.secret);
      return undefined;
    }
    const stored: StoredKeyHash = {
      salt: Buffer.from(row.salt),
      hash: Buffer.from(row.hash),
      iterations: row.iterations,
    };
    const valid =
      (checkedBefore !== undefined && sameStoredHash(checkedBefore.stored, stored)) ||
      (await verifySecret(parsed.secret, stored));
    if (!valid) {
      // The row holds another hash now, which this secret does not match.
      if (checkedBefore) this.#cache?.delete(parsed.keyId);
      return undefined;
    }
    const verified: VerifiedKey = Object.freeze({
      tenantId: row.tenant_id,
      keyId: parsed.keyId,
      scope:
        row.permissions === null && row.created_by === null
          ? UNSCOPED
          : Object.freeze({
              permissions: row.permissions === null ? null : Object.freeze([...row.permissions]),
              createdBy: row.created_by,
            }),
    });
    const entry: CachedKey = {
      verified,
      digest: checkedBefore?.digest ?? this.#digester.digest(parsed.secret),
      stored,
      expiresAt: row.expires_at === null ? Number.POSITIVE_INFINITY : new Date(row.expires_at).getTime(),
      checkedAt: Date.now(),
      // A renewed entry keeps its last touch; a new one is recorded below by the recorder itself.
      touchedAt: checkedBefore?.touchedAt ?? Date.now(),
    };
    if (generation === this.#generation && this.#options.bus.reliable) this.#cache?.set(parsed.keyId, entry);
    this.#touch(parsed.keyId, checkedBefore ? entry : undefined);
    return verified;
  }

  /**
   * The key id a presented key names, when a usable key has it (not revoked, not expired, of an
   * active tenant). Asked without hashing anything: for a client already over its failure
   * allowance, only a key that exists is worth a slow hash (see `resolveGuarded`).
   */
  async knownKeyId(presented: string): Promise<string | undefined> {
    const parsed = parseApiKey(presented);
    if (!parsed) return undefined;
    const row = await findKeyForVerification(this.#options.db, parsed.keyId);
    return row?.usable ? parsed.keyId : undefined;
  }

  /** Drops every cached verification (tests, and a reload of the whole process state). */
  clear(): void {
    this.#generation += 1;
    this.#cache?.clear();
  }

  async #spendDecoyTime(secret: string): Promise<void> {
    await verifySecret(secret, await this.#decoy);
  }

  /** Writes the key uses not recorded yet, now (tests). */
  flushLastUsed(): Promise<void> {
    return this.#lastUsed.flush();
  }

  /** Writes the key uses not recorded yet and records no more (before the database closes). */
  close(): Promise<void> {
    return this.#lastUsed.close();
  }

  /**
   * Records a key's use at most once per `touchIntervalMs`, batched with other keys' uses. A
   * cached key remembers its last record on its entry (no second lookup per request).
   */
  #touch(keyId: string, entry?: CachedKey): void {
    if (entry) entry.touchedAt = this.#lastUsed.used(keyId, entry.touchedAt);
    else this.#lastUsed.used(keyId);
  }
}

function sameStoredHash(a: StoredKeyHash, b: StoredKeyHash): boolean {
  return a.iterations === b.iterations && a.salt.equals(b.salt) && a.hash.equals(b.hash);
}
