import type * as Crypto from 'node:crypto';

/**
 * Every slow hash run by the code under test, recorded by a test file that mocks `node:crypto`:
 *
 *   vi.mock('node:crypto', async (original) =>
 *     (await import('../helpers/slow-hash-runs.js')).recordingCrypto(await original()));
 *
 * The hashes still run. Tests of "pays the slow hash" and "refused before the slow hash" count
 * these instead of timing requests, which a loaded CI machine makes flaky.
 */
export const slowHashRuns: { kind: 'pbkdf2' | 'scrypt'; cost: number }[] = [];

let heldResults: (() => void)[] | undefined;

/**
 * Until the returned function is called, finished PBKDF2 hashes keep their results: a test can
 * act while a key check is certainly still running, then let it finish.
 */
export function holdSlowHashResults(): () => void {
  heldResults = [];
  return () => {
    const waiting = heldResults ?? [];
    heldResults = undefined;
    for (const deliver of waiting) deliver();
  };
}

export function recordingCrypto(actual: typeof Crypto): typeof Crypto {
  const pbkdf2 = ((...args: Parameters<typeof actual.pbkdf2>) => {
    slowHashRuns.push({ kind: 'pbkdf2', cost: args[2] });
    const callback = args[5];
    args[5] = (error, key) => {
      if (heldResults) heldResults.push(() => callback(error, key));
      else callback(error, key);
    };
    return actual.pbkdf2(...args);
  }) as typeof actual.pbkdf2;
  const scrypt = ((...args: [Crypto.BinaryLike, Crypto.BinaryLike, number, ...unknown[]]) => {
    const options = typeof args[3] === 'object' ? (args[3] as Crypto.ScryptOptions) : {};
    slowHashRuns.push({ kind: 'scrypt', cost: options.N ?? options.cost ?? 16_384 });
    return (actual.scrypt as (...all: unknown[]) => void)(...args);
  }) as typeof actual.scrypt;
  const recording = { ...actual, pbkdf2, scrypt };
  return { ...recording, default: recording } as typeof Crypto;
}
