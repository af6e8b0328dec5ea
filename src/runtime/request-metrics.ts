import type { Registry } from 'prom-client';
import {
  type ExportedMetric,
  type HistogramCell,
  histogramCell,
  histogramMetric,
  observeIn,
  register,
} from './histogram-cells.js';

/** The counts of one (tenant, route, method): statuses for the counter, buckets for the histogram. */
interface RouteCell extends HistogramCell<{ tenant: string; route: string; method: string }> {
  readonly statuses: Map<number, number>;
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
    const histogram = histogramMetric(
      options.histogramName,
      options.histogramHelp,
      this.#bounds,
      cells,
      reset,
    );
    register(options.registry, counter);
    register(options.registry, histogram);
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
      cell = { ...histogramCell({ tenant, route, method }, this.#bounds), statuses: new Map() };
      byMethod.set(method, cell);
    }
    cell.statuses.set(status, (cell.statuses.get(status) ?? 0) + 1);
    observeIn(cell, this.#bounds, seconds);
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
