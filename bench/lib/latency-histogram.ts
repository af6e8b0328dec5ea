/**
 * Response times in 10 µs buckets up to 1 s (autocannon's own histogram has 1 ms resolution,
 * too coarse for sub-millisecond medians). Recording is one array increment, so the load
 * generator, which shares the CPUs with the server, does not slow down.
 */
export class LatencyHistogram {
  static readonly BUCKET_MS = 0.01;
  readonly #counts = new Uint32Array(100_000);
  #total = 0;

  record(ms: number): void {
    const bucket = Math.min(Math.floor(ms / LatencyHistogram.BUCKET_MS), this.#counts.length - 1);
    this.#counts[bucket]! += 1;
    this.#total += 1;
  }

  /** Adds another histogram's samples to this one. */
  add(other: LatencyHistogram): void {
    for (let bucket = 0; bucket < this.#counts.length; bucket += 1) {
      this.#counts[bucket]! += other.#counts[bucket]!;
    }
    this.#total += other.#total;
  }

  get count(): number {
    return this.#total;
  }

  /** The upper edge of the bucket holding the p-th percentile, in milliseconds. */
  percentile(p: number): number {
    if (this.#total === 0) return Number.NaN;
    const rank = Math.ceil((p / 100) * this.#total);
    let seen = 0;
    for (let bucket = 0; bucket < this.#counts.length; bucket += 1) {
      seen += this.#counts[bucket]!;
      if (seen >= rank) return (bucket + 1) * LatencyHistogram.BUCKET_MS;
    }
    return Number.POSITIVE_INFINITY;
  }
}
