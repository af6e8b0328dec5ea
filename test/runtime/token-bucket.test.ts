import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucketPolicy, CLOSED_RETRY_MS, takeToken } from '../../src/runtime/token-bucket.js';

describe('the token bucket (GCRA)', () => {
  it('lets a full bucket spend its burst at once, then one request per interval', () => {
    const policy = bucketPolicy({ requestsPerSecond: 5, burst: 10 })!;
    expect(policy).toMatchObject({ intervalMs: 200, burst: 10, name: '10;w=2' });
    let tat: number | undefined;
    const remaining: number[] = [];
    for (let i = 0; i < 10; i += 1) {
      const decision = takeToken(tat, 0, policy);
      expect(decision.allowed).toBe(true);
      remaining.push(decision.remaining);
      tat = decision.tat;
    }
    expect(remaining).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    const refused = takeToken(tat, 0, policy);
    expect(refused).toMatchObject({ allowed: false, retryMs: 200, remaining: 0, resetMs: 2000 });
    expect(takeToken(tat, 199, policy).allowed).toBe(false);
    expect(takeToken(tat, 200, policy).allowed).toBe(true);
  });

  it('never lets a saturating client go faster than its rate, whatever the burst', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.5, max: 500, noNaN: true }),
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 20 }),
        (rate, burst, stepMs) => {
          const policy = bucketPolicy({ requestsPerSecond: rate, burst })!;
          let tat: number | undefined;
          let allowed = 0;
          const horizonMs = 10_000;
          for (let now = 0; now <= horizonMs; now += stepMs) {
            const decision = takeToken(tat, now, policy);
            if (decision.allowed) {
              allowed += 1;
              tat = decision.tat;
            }
          }
          // A token bucket allows at most burst + rate × time.
          return allowed <= burst + Math.floor((rate * horizonMs) / 1000) + 1;
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refills after a quiet spell, but never above its burst', () => {
    const policy = bucketPolicy({ requestsPerSecond: 10, burst: 3 })!;
    let tat: number | undefined;
    for (let i = 0; i < 3; i += 1) tat = takeToken(tat, 0, policy).tat;
    expect(takeToken(tat, 0, policy).allowed).toBe(false);
    // An hour later the bucket holds 3 tokens again, not 36,000.
    const later = 3_600_000;
    let spent = 0;
    while (takeToken(tat, later, policy).allowed) {
      tat = takeToken(tat, later, policy).tat;
      spent += 1;
    }
    expect(spent).toBe(3);
  });

  it('defaults the burst to one second of requests, and 0 requests per second closes the bucket', () => {
    expect(bucketPolicy({ requestsPerSecond: 2.5 })).toMatchObject({ burst: 3, intervalMs: 400 });
    expect(bucketPolicy({ requestsPerSecond: 0.1 })).toMatchObject({ burst: 1, intervalMs: 10_000 });
    expect(bucketPolicy({ maxConcurrent: 3 })).toBeUndefined();
    const closed = bucketPolicy({ requestsPerSecond: 0, burst: 10 })!;
    expect(takeToken(undefined, 0, closed)).toMatchObject({ allowed: false, retryMs: CLOSED_RETRY_MS });
  });
});
