import { setTimeout as sleep } from 'node:timers/promises';

/** Long enough for a loaded CI machine; a state that is never reached still fails, just later. */
export const EVENTUALLY_MS = 20_000;

/**
 * Polls `probe` until it returns something other than undefined or false, and returns that. It
 * asserts a state that must be reached, never how fast: the deadline only ends a wait for
 * something that will not happen, and fails naming `what`.
 *
 * @example
 * await eventually('the other process refuses the old key', async () => (await status(b, oldKey)) === 401);
 */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  deadlineMs = EVENTUALLY_MS,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`not seen within ${deadlineMs} ms: ${what}`);
    await sleep(25);
  }
}
