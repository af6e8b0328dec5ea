import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseApiKey } from '../../src/auth/api-key.js';
import { ApiKeyVerifier } from '../../src/auth/api-key-verifier.js';
import { eventually } from '../helpers/eventually.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { slowHashRuns } from '../helpers/slow-hash-runs.js';

vi.mock('node:crypto', async (original) =>
  (await import('../helpers/slow-hash-runs.js')).recordingCrypto(await original()),
);

// Long enough that a loaded machine does not age an entry between two steps of a test.
const RECHECK_SECONDS = 2;

describe.each(DRIVERS)('a verified key past the cache time, on %s', (driver) => {
  let env: TestEnv;
  let verifier: ApiKeyVerifier;
  /** Statements that wrote `last_used_at`, through the verifier's database handle. */
  let lastUsedWrites = 0;

  beforeAll(async () => {
    env = await startTestEnv(driver);
  });
  afterAll(async () => {
    await env?.close();
  });
  afterEach(async () => {
    await verifier.close();
  });
  beforeEach(() => {
    lastUsedWrites = 0;
    const runtime = env.engine.db.runtime;
    verifier = new ApiKeyVerifier({
      db: {
        query: (sql, params) => {
          if (sql.includes('last_used_at')) lastUsedWrites += 1;
          return runtime.query(sql, params);
        },
      },
      bus: env.engine.bus,
      iterations: env.config.apiKeys.iterations,
      cacheSize: 100,
      cacheTtlSeconds: RECHECK_SECONDS,
    });
  });

  /** PBKDF2 runs while `action` runs (the verifier's decoy hash, made at construction, is not one). */
  const slowHashesDuring = async <T>(action: () => Promise<T>): Promise<{ result: T; hashes: number }> => {
    slowHashRuns.length = 0;
    const result = await action();
    return { result, hashes: slowHashRuns.filter((run) => run.kind === 'pbkdf2').length };
  };
  /**
   * Verifies until the verification is cached: on PostgreSQL the notification of the tenant's
   * creation arrives after the response, and a fill that raced with a notification is dropped.
   */
  const verifyAndCache = async (key: string): Promise<void> => {
    await eventually('the verification cached', async () => {
      expect(await verifier.verify(key)).toBeDefined();
      return verifier.verifyCached(key) !== undefined;
    });
  };
  const pastRecheckTime = () => sleep(RECHECK_SECONDS * 1000 + 100);
  const keyIdOf = (key: string) => parseApiKey(key)!.keyId;

  it('is renewed by reading its row, without the slow hash, while the row holds the hash it matched', async () => {
    const tenant = await env.createTenant('renewed');
    const first = await slowHashesDuring(() => verifyAndCache(tenant.key));
    expect(first.hashes).toBeGreaterThanOrEqual(1);
    expect(verifier.verifyCached(tenant.key)?.tenantId).toBe(tenant.id);

    await pastRecheckTime();
    expect(verifier.verifyCached(tenant.key)).toBeUndefined();
    const renewed = await slowHashesDuring(() => verifier.verify(tenant.key));
    expect(renewed.result?.tenantId).toBe(tenant.id);
    expect(renewed.hashes).toBe(0);
    expect(verifier.verifyCached(tenant.key)?.tenantId).toBe(tenant.id);
  });

  it('is refused once its row says it is revoked, even when no change was announced', async () => {
    const tenant = await env.createTenant('quietly-revoked');
    await verifyAndCache(tenant.key);
    // Straight in SQL, no notification: only the row tells.
    await env.engine.db.owner.query('UPDATE tenantry.api_keys SET revoked_at = now() WHERE key_id = $1', [
      keyIdOf(tenant.key),
    ]);
    expect(verifier.verifyCached(tenant.key)?.tenantId).toBe(tenant.id);
    await pastRecheckTime();
    const refused = await slowHashesDuring(() => verifier.verify(tenant.key));
    expect(refused.result).toBeUndefined();
    // A refusal costs the decoy's slow hash, like every other.
    expect(refused.hashes).toBe(1);
    expect(verifier.verifyCached(tenant.key)).toBeUndefined();
  });

  it('pays the slow hash again when the stored hash changed, and is refused if the secret no longer matches', async () => {
    const tenant = await env.createTenant('rehashed');
    const other = await env.createTenant('rehashed-other');
    await verifyAndCache(tenant.key);
    // The row now holds another key's salt and hash: the cached secret no longer matches it.
    await env.engine.db.owner.query(
      `UPDATE tenantry.api_keys k SET salt = o.salt, hash = o.hash, iterations = o.iterations
         FROM tenantry.api_keys o WHERE k.key_id = $1 AND o.key_id = $2`,
      [keyIdOf(tenant.key), keyIdOf(other.key)],
    );
    await pastRecheckTime();
    const refused = await slowHashesDuring(() => verifier.verify(tenant.key));
    expect(refused.result).toBeUndefined();
    expect(refused.hashes).toBe(1);
  });

  it('renews nothing for a wrong secret under a cached key id: that still pays the slow hash and fails', async () => {
    const tenant = await env.createTenant('wrong-secret');
    await verifyAndCache(tenant.key);
    await pastRecheckTime();
    const forged = `${tenant.key.slice(0, -4)}${tenant.key.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
    const refused = await slowHashesDuring(() => verifier.verify(forged));
    expect(refused.result).toBeUndefined();
    expect(refused.hashes).toBe(1);
    // The right secret is still renewed without a slow hash.
    const renewed = await slowHashesDuring(() => verifier.verify(tenant.key));
    expect(renewed.result?.tenantId).toBe(tenant.id);
    expect(renewed.hashes).toBe(0);
  });

  it('writes the uses of several keys in one statement: every key shows when it was last used', async () => {
    const first = await env.createTenant('used-first');
    const second = await env.createTenant('used-second');
    // Checked together: both uses are queued within the same second, whatever the cache does.
    const verified = await Promise.all([verifier.verify(first.key), verifier.verify(second.key)]);
    expect(verified.map((key) => key?.tenantId)).toEqual([first.id, second.id]);
    await verifier.flushLastUsed();
    expect(lastUsedWrites).toBe(1);
    const { rows } = await env.engine.db.owner.query<{ key_id: string; last_used_at: unknown }>(
      'SELECT key_id, last_used_at FROM tenantry.api_keys WHERE key_id = ANY(ARRAY[$1, $2])',
      [keyIdOf(first.key), keyIdOf(second.key)],
    );
    expect(rows).toHaveLength(2);
    for (const row of rows) expect(row.last_used_at).not.toBeNull();
  });
});
