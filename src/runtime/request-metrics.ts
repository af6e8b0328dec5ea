import type { Registry } from 'prom-client';

/** What a metric of a prom-client registry must offer (the shape its own metrics have). */
interface ExportedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
  }>;
  reset(): void;
}

/** The counts of one (tenant, route, method): statuses for the counter, buckets for the histogram. */
interface RouteCell {
  readonly labels: { readonly tenant: string; readonly route: string; readonly method: string };
  readonly statuses: Map<number, number>;
  /** Observations per bucket (not cumulative); the last one is +Inf. */
  readonly buckets: Float64Array;
  count: number;
  sum: number;
}

export interface RequestMetricsOptions {
  readonly registry: Registry;
  readonly counterName: string;
  readonly counterHelp: string;
  readonly histogramName: string;
  readonly histogramHelp: string;
  /** Upper bounds in seconds, ascending. */
  readonly buckets: readonly number[];
}

/**
 * Requests by tenant, route, method and status, and their latency: the same two series a
 * prom-client Counter and Histogram would expose, recorded on every response. prom-client hashes
 * and checks the label object on each call (about a microsecond for the pair); here a request
 * walks three maps keyed by strings the process already holds and bumps numbers, and the label
 * objects are built only when the registry is scraped.
 */
export class RequestMetrics {
  readonly #bounds: Float64Array;
  readonly #cells = new Map<string, Map<string, Map<string, RouteCell>>>();

  constructor(options: RequestMetricsOptions) {
    this.#bounds = Float64Array.from(options.buckets);
    const cells = () => this.#allCells();
    const reset = () => this.#cells.clear();
    const counter: ExportedMetric = {
      name: options.counterName,
      help: options.counterHelp,
      type: 'counter',
      aggregator: 'sum',
      async get() {
        const values = [];
        for (const cell of cells()) {
          for (const [status, value] of cell.statuses) {
            values.push({ labels: { ...cell.labels, status: String(status) }, value });
          }
        }
        return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
      },
      reset,
    };
    const bounds = this.#bounds;
    const histogram: ExportedMetric = {
      name: options.histogramName,
      help: options.histogramHelp,
      type: 'histogram',
      aggregator: 'sum',
      async get() {
        const values = [];
        const bucketName = `${this.name}_bucket`;
        for (const cell of cells()) {
          let cumulative = 0;
          for (let i = 0; i < bounds.length; i += 1) {
            cumulative += cell.buckets[i]!;
            values.push({
              labels: { ...cell.labels, le: bounds[i]! },
              value: cumulative,
              metricName: bucketName,
            });
          }
          values.push({ labels: { ...cell.labels, le: '+Inf' }, value: cell.count, metricName: bucketName });
          values.push({ labels: cell.labels, value: cell.sum, metricName: `${this.name}_sum` });
          values.push({ labels: cell.labels, value: cell.count, metricName: `${this.name}_count` });
        }
        return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
      },
      reset,
    };
    // The registry accepts any object with prom-client's metric shape.
    options.registry.registerMetric(counter as never);
    options.registry.registerMetric(histogram as never);
  }

  /** One finished request. `route` is a route pattern, never a raw URL (bounded values). */
  observe(tenant: string, route: string, method: string, status: number, seconds: number): void {
    let byRoute = this.#cells.get(tenant);
    if (byRoute === undefined) {
      byRoute = new Map();
      this.#cells.set(tenant, byRoute);
    }
    let byMethod = byRoute.get(route);
    if (byMethod === undefined) {
      byMethod = new Map();
      byRoute.set(route, byMethod);
    }
    let cell = byMethod.get(method);
    if (cell === undefined) {
      cell = {
        labels: { tenant, route, method },
        statuses: new Map(),
        buckets: new Float64Array(this.#bounds.length + 1),
        count: 0,
        sum: 0,
      };
      byMethod.set(method, cell);
    }
    cell.statuses.set(status, (cell.statuses.get(status) ?? 0) + 1);
    const bounds = this.#bounds;
    let bucket = 0;
    while (bucket < bounds.length && seconds > bounds[bucket]!) bucket += 1;
    cell.buckets[bucket]! += 1;
    cell.count += 1;
    cell.sum += seconds;
  }

  /** Forgets a tenant label's series (a tenant that lost its own label). */
  removeTenant(tenant: string): void {
    this.#cells.delete(tenant);
  }

  *#allCells(): Generator<RouteCell> {
    for (const byRoute of this.#cells.values()) {
      for (const byMethod of byRoute.values()) yield* byMethod.values();
    }
  }
}
