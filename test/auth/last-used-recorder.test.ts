import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, vi } from 'vitest';
import { LastUsedRecorder } from '../../src/auth/last-used-recorder.js';

function recorder(options: { intervalMs?: number; failFirst?: boolean; handlerThrows?: boolean } = {}) {
  const writes: string[][] = [];
  const errors: unknown[] = [];
  let fail = options.failFirst ?? false;
  const recording = new LastUsedRecorder({
    write: async (ids) => {
      if (fail) {
        fail = false;
        throw new Error('database down');
      }
      writes.push([...ids]);
    },
    intervalMs: options.intervalMs ?? 60_000,
    flushMs: 20,
    onError: (error) => {
      errors.push(error);
      if (options.handlerThrows) throw new Error('the handler itself fails');
    },
  });
  return { recording, writes, errors };
}

describe('LastUsedRecorder', () => {
  it('writes the ids used within a flush period together, in one write', async () => {
    const { recording, writes } = recorder();
    recording.used('a');
    recording.used('b');
    recording.used('c');
    expect(writes).toEqual([]);
    await sleep(60);
    expect(writes).toEqual([['a', 'b', 'c']]);
  });

  it('records an id once per interval, however often it is used', async () => {
    // The clock moves only when told: a slow machine cannot stretch the uses past the interval.
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const { recording, writes } = recorder({ intervalMs: 200 });
      for (let use = 0; use < 50; use += 1) recording.used('busy');
      await recording.flush();
      vi.setSystemTime(Date.now() + 199);
      recording.used('busy');
      await recording.flush();
      expect(writes).toEqual([['busy']]);
      vi.setSystemTime(Date.now() + 1);
      recording.used('busy');
      await recording.flush();
      expect(writes).toEqual([['busy'], ['busy']]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("keeps to the caller's own record of the last use when given one", async () => {
    const { recording, writes } = recorder({ intervalMs: 1_000 });
    const recent = Date.now() - 10;
    expect(recording.used('cached', recent)).toBe(recent);
    const long = Date.now() - 5_000;
    const renewed = recording.used('cached', long);
    expect(renewed).toBeGreaterThan(long);
    await recording.flush();
    expect(writes).toEqual([['cached']]);
  });

  it('splits a large flush into writes of at most 1,000 ids', async () => {
    const { recording, writes } = recorder();
    for (let id = 0; id < 2_500; id += 1) recording.used(`key-${id}`);
    await recording.flush();
    expect(writes.map((ids) => ids.length)).toEqual([1_000, 1_000, 500]);
    expect(new Set(writes.flat()).size).toBe(2_500);
  });

  it('reports a failed write and goes on with the next ones', async () => {
    const { recording, writes, errors } = recorder({ failFirst: true });
    recording.used('lost');
    await recording.flush();
    expect(errors).toHaveLength(1);
    recording.used('next');
    await recording.flush();
    expect(writes).toEqual([['next']]);
  });

  it('writes one batch at a time: uses during a slow write gather into the next batch', async () => {
    const started: string[][] = [];
    let release: () => void = () => undefined;
    const recording = new LastUsedRecorder({
      write: (ids) => {
        started.push([...ids]);
        return started.length === 1 ? new Promise<void>((done) => (release = done)) : Promise.resolve();
      },
      flushMs: 10,
    });
    recording.used('a');
    await sleep(40);
    expect(started).toEqual([['a']]);
    // Two flush periods pass while it runs: their uses still make one batch, not one each.
    recording.used('b');
    await sleep(40);
    recording.used('c');
    await sleep(40);
    // The first write still runs: nothing more has started.
    expect(started).toEqual([['a']]);
    release();
    await recording.flush();
    expect(started).toEqual([['a'], ['b', 'c']]);
  });

  it('a throwing error handler does not stop later writes', async () => {
    const { recording, writes, errors } = recorder({ failFirst: true, handlerThrows: true });
    recording.used('lost');
    await recording.flush();
    expect(errors).toHaveLength(1);
    recording.used('kept');
    await recording.flush();
    expect(writes).toEqual([['kept']]);
  });

  it('records nothing after close, and close writes what was pending', async () => {
    const { recording, writes } = recorder();
    recording.used('before');
    await recording.close();
    expect(writes).toEqual([['before']]);
    recording.used('after');
    await sleep(60);
    await recording.flush();
    expect(writes).toEqual([['before']]);
  });
});
