import type { Registry } from 'prom-client';

/** What a metric of a prom-client registry must offer (the shape its own metrics have). */
export interface ExportedMetric {
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

/** The observations of one label set: per bucket (not cumulative; the last is +Inf), count, sum. */
export interface HistogramCell<L extends Record<string, string>> {
  readonly labels: L;
  readonly buckets: Float64Array;
  count: number;
  sum: number;
}

export function histogramCell<L extends Record<string, string>>(
  labels: L,
  bounds: Float64Array,
): HistogramCell<L> {
  return { labels, buckets: new Float64Array(bounds.length + 1), count: 0, sum: 0 };
}

export function observeIn(
  cell: HistogramCell<Record<string, string>>,
  bounds: Float64Array,
  seconds: number,
): void {
  let bucket = 0;
  while (bucket < bounds.length && seconds > bounds[bucket]!) bucket += 1;
  cell.buckets[bucket]! += 1;
  cell.count += 1;
  cell.sum += seconds;
}

/**
 * A histogram as prom-client exports one, over cells a caller keeps: recording is a few number
 * increments on a cell found by keys the process already holds, where prom-client hashes and
 * checks the label object on every call; the label objects are built only when scraped.
 */
export function histogramMetric(
  name: string,
  help: string,
  bounds: Float64Array,
  cells: () => Iterable<HistogramCell<Record<string, string>>>,
  reset: () => void,
): ExportedMetric {
  return {
    name,
    help,
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values = [];
      const bucketName = `${name}_bucket`;
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
        values.push({ labels: cell.labels, value: cell.sum, metricName: `${name}_sum` });
        values.push({ labels: cell.labels, value: cell.count, metricName: `${name}_count` });
      }
      return { name, help, type: 'histogram', aggregator: 'sum', values };
    },
    reset,
  };
}

/** The registry accepts any object with prom-client's metric shape. */
export function register(registry: Registry, metric: ExportedMetric): void {
  registry.registerMetric(metric as never);
}

/** Observations by tenant label alone (the tenant database's statement and transaction times). */
export class TenantHistogram {
  readonly #bounds: Float64Array;
  readonly #cells = new Map<string, HistogramCell<{ tenant: string }>>();

  constructor(options: { registry: Registry; name: string; help: string; buckets: readonly number[] }) {
    this.#bounds = Float64Array.from(options.buckets);
    const cells = this.#cells;
    register(
      options.registry,
      histogramMetric(
        options.name,
        options.help,
        this.#bounds,
        () => cells.values(),
        () => cells.clear(),
      ),
    );
  }

  observe(tenant: string, seconds: number): void {
    let cell = this.#cells.get(tenant);
    if (cell === undefined) {
      cell = histogramCell({ tenant }, this.#bounds);
      this.#cells.set(tenant, cell);
    }
    observeIn(cell, this.#bounds, seconds);
  }

  remove(tenant: string): void {
    this.#cells.delete(tenant);
  }
}
