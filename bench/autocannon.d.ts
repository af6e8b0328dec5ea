/** The part of autocannon's programmatic API the benchmarks use (the package ships no types). */
declare module 'autocannon' {
  /** hdr-histogram-percentiles-obj: latency in milliseconds, requests and throughput per second. */
  export interface Histogram {
    readonly average: number;
    readonly mean: number;
    readonly stddev: number;
    readonly min: number;
    readonly max: number;
    readonly total: number;
    readonly p2_5: number;
    readonly p50: number;
    readonly p90: number;
    readonly p97_5: number;
    readonly p99: number;
    readonly p99_9: number;
  }

  export interface Result {
    readonly url: string;
    readonly requests: Histogram;
    readonly latency: Histogram;
    readonly throughput: Histogram;
    /** Seconds. */
    readonly duration: number;
    readonly errors: number;
    readonly timeouts: number;
    readonly non2xx: number;
    readonly '2xx': number;
    readonly statusCodeStats: Readonly<Record<string, { readonly count: number }>>;
  }

  export interface Options {
    readonly url: string;
    readonly connections?: number;
    /** Seconds. */
    readonly duration?: number;
    /** Stop after this many requests instead of after `duration`. */
    readonly amount?: number;
    readonly pipelining?: number;
    readonly method?: string;
    readonly headers?: Readonly<Record<string, string>>;
    readonly workers?: number;
    readonly title?: string;
  }

  /** What `autocannon(options)` returns without a callback: an event emitter that is also a promise. */
  export interface Instance extends PromiseLike<Result> {
    /** Every response, with its exact response time in milliseconds (the histogram rounds to 1 ms). */
    on(
      event: 'response',
      listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void,
    ): this;
  }

  export default function autocannon(options: Options): Instance;
}
