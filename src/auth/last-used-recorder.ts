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
  #pending = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(options: LastUsedRecorderOptions) {
    this.#options = options;
    this.#intervalMs = options.intervalMs ?? 60_000;
  }

  get intervalMs(): number {
    return this.#intervalMs;
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
    if (lastQueuedAt === undefined) this.#queuedAt.set(id, now);
    this.#pending.add(id);
    this.#timer ??= setTimeout(() => this.#flush(), this.#options.flushMs ?? 1_000).unref();
    return now;
  }

  /** Writes what is pending now (shutdown, tests). */
  flush(): Promise<void> {
    return this.#flush();
  }

  #flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    const ids = [...this.#pending];
    this.#pending = new Set();
    if (ids.length === 0) return this.#flushing;
    this.#flushing = this.#flushing.then(async () => {
      for (let start = 0; start < ids.length; start += IDS_PER_WRITE) {
        await this.#options.write(ids.slice(start, start + IDS_PER_WRITE)).catch((error: unknown) => {
          this.#options.onError?.(error);
        });
      }
    });
    return this.#flushing;
  }
}
