import { LRUCache } from 'lru-cache';

export interface LastUsedRecorderOptions {
  /** Writes `last_used_at = now()` for these ids, in one statement. */
  readonly write: (ids: readonly string[]) => Promise<void>;
  /** An id is written at most once per interval (default one minute). */
  readonly intervalMs?: number;
  /** How long uses gather before they are written together (default one second). */
  readonly flushMs?: number;
  readonly onError?: (error: unknown) => void;
}

/** Ids per statement: a flush of more is split, so no statement carries an unbounded parameter. */
const IDS_PER_WRITE = 1_000;

/**
 * Records when API keys or sessions were last used without a transaction per use: an id is
 * recorded at most once per interval, and the ids used within a second are written together in
 * one UPDATE. A thousand busy keys cost one statement a second instead of a thousand commits,
 * each of which flushes the write-ahead log. `last_used_at` is therefore up to one interval and
 * one flush behind, which is what it promises ("last used", to the minute).
 */
export class LastUsedRecorder {
  readonly #options: LastUsedRecorderOptions;
  readonly #intervalMs: number;
  /** When each id was last queued, for ids whose caller keeps no record of its own. */
  readonly #queuedAt = new LRUCache<string, number>({ max: 100_000 });
  /** Ids used and not written yet; a Set, so a slow database makes it wait, not grow per use. */
  #pending = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  /** The write in flight: one at a time, and the next batch gathers meanwhile. */
  #writing: Promise<void> | undefined;
  #closed = false;

  constructor(options: LastUsedRecorderOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? 60_000;
  }

  /**
   * Records a use of `id`, unless it was recorded less than an interval ago. `lastQueuedAt` is the
   * caller's own record of that (a cache entry's), which saves a lookup here; the return value is
   * the new one (unchanged when nothing was queued).
   */
  used(id: string, lastQueuedAt?: number): number {
    const now = Date.now();
    const last = lastQueuedAt ?? this.#queuedAt.get(id);
    if (last !== undefined && now - last < this.#intervalMs) return last;
    if (this.#closed) return now;
    if (lastQueuedAt === undefined) this.#queuedAt.set(id, now);
    this.#pending.add(id);
    this.#schedule();
    return now;
  }

  /** Writes what is pending now and waits for it (tests). */
  async flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#writing || this.#pending.size > 0) {
      if (!this.#writing) this.#startWrite();
      await this.#writing;
    }
  }

  /** Writes what is pending, then records nothing more (before the database closes). */
  async close(): Promise<void> {
    this.#closed = true;
    await this.flush();
  }

  #schedule(): void {
    if (this.#timer || this.#writing) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#startWrite();
    }, this.#options.flushMs ?? 1_000).unref();
  }

  #startWrite(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ids = [...this.#pending];
    this.#pending = new Set();
    if (ids.length === 0) return;
    this.#writing = this.#write(ids).finally(() => {
      this.#writing = undefined;
      if (this.#pending.size > 0 && !this.#closed) this.#schedule();
    });
  }

  async #write(ids: readonly string[]): Promise<void> {
    for (let start = 0; start < ids.length; start += IDS_PER_WRITE) {
      try {
        await this.#options.write(ids.slice(start, start + IDS_PER_WRITE));
      } catch (error) {
        try {
          this.#options.onError?.(error);
        } catch {
          // A failing error handler must not stop the recording.
        }
      }
    }
  }
}
