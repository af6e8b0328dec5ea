/**
 * Admission to a bounded set of connections, fair between tenants. While a connection is free,
 * a checkout is granted at once (and synchronously: no promise on the hot path). When all are in
 * use, waiters queue per key (the tenant id) and each freed connection goes to the next key in
 * turn, each key's own waiters in arrival order. A tenant that sends a burst then waits behind its
 * own burst, and another tenant's request waits for at most one turn of each busy tenant, not for
 * the whole burst (first-come-first-served, pg-pool's own order, would queue it behind all of it).
 * A release may hand its connection (`T`) straight to the next waiter, which then skips the
 * pool; a waiter handed nothing takes a connection from the pool itself.
 */
export class FairCheckout<T = unknown> {
  readonly #capacity: number;
  readonly #timeoutMs: number;
  #inUse = 0;
  /** Keys with waiters, in turn order: the first is served next, then moved to the end. */
  readonly #queues = new Map<string, Waiter<T>[]>();

  constructor(capacity: number, timeoutMs: number) {
    this.#capacity = capacity;
    this.#timeoutMs = timeoutMs;
  }

  /** Checkouts granted and not released yet. */
  get inUse(): number {
    return this.#inUse;
  }

  /** Requests waiting for a connection, all keys together. */
  get waiting(): number {
    let count = 0;
    for (const queue of this.#queues.values()) count += queue.length;
    return count;
  }

  /**
   * Undefined when granted at once; otherwise a promise that resolves when granted, or rejects
   * after the timeout (the waiter then leaves its queue and takes nothing). Each grant must be
   * followed by exactly one `release`.
   */
  acquire(key: string): Promise<T | undefined> | undefined {
    if (this.#inUse < this.#capacity && this.#queues.size === 0) {
      this.#inUse += 1;
      return undefined;
    }
    return new Promise<T | undefined>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, timer: undefined };
      waiter.timer = setTimeout(() => {
        this.#leave(key, waiter);
        reject(new Error('timeout exceeded when trying to connect'));
      }, this.#timeoutMs);
      waiter.timer.unref?.();
      const queue = this.#queues.get(key);
      if (queue) queue.push(waiter);
      else this.#queues.set(key, [waiter]);
    });
  }

  /**
   * Returns a granted checkout: the next key in turn gets it (with `handed`, when given), or it
   * becomes free. True when a waiter took it: `handed` is then the waiter's.
   */
  release(handed?: T): boolean {
    for (const [key, queue] of this.#queues) {
      const waiter = queue.shift()!;
      // Served: this key goes to the end of the turn, or leaves it with nobody waiting.
      this.#queues.delete(key);
      if (queue.length > 0) this.#queues.set(key, queue);
      clearTimeout(waiter.timer);
      waiter.resolve(handed);
      return true;
    }
    this.#inUse -= 1;
    return false;
  }

  #leave(key: string, waiter: Waiter<T>): void {
    const queue = this.#queues.get(key);
    if (!queue) return;
    const index = queue.indexOf(waiter);
    if (index >= 0) queue.splice(index, 1);
    if (queue.length === 0) this.#queues.delete(key);
  }
}

interface Waiter<T> {
  readonly resolve: (handed: T | undefined) => void;
  timer: NodeJS.Timeout | undefined;
}
