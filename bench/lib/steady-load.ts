import { Agent } from 'node:http';
import { httpGet } from './http-get.js';
import { LatencyHistogram } from './latency-histogram.js';

export interface SteadyLoadOptions {
  readonly url: string;
  /** Requests per second, sent on a fixed schedule whatever the server does (open loop). */
  readonly rate: number;
  readonly durationSeconds: number;
  /** Keep-alive connections; a request finding all busy waits for one, and that wait counts. */
  readonly connections: number;
  /** The path and headers of the i-th request. */
  readonly next: (index: number) => { readonly path: string; readonly headers: Record<string, string> };
  /** Where latencies are recorded (pass one histogram to several runs to pool their samples). */
  readonly histogram?: LatencyHistogram;
}

export interface SteadyLoadResult {
  readonly histogram: LatencyHistogram;
  readonly ok: number;
  readonly failed: number;
  /** Responses by HTTP status (0: the request failed without one). */
  readonly statuses: ReadonlyMap<number, number>;
}

/**
 * A fixed-rate load with latencies at 10 µs resolution, each measured from the moment the request
 * was due, not from when it was sent: a server that stalls is charged for the requests that queued
 * behind the stall (coordinated omission corrected). autocannon reports whole milliseconds, too
 * coarse for a p99 of a few milliseconds.
 */
export function steadyLoad(options: SteadyLoadOptions): Promise<SteadyLoadResult> {
  const histogram = options.histogram ?? new LatencyHistogram();
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const target = new URL(options.url);
  const total = Math.round(options.rate * options.durationSeconds);
  const intervalMs = 1000 / options.rate;
  let sent = 0;
  let finished = 0;
  let ok = 0;
  let failed = 0;
  const statuses = new Map<number, number>();
  return new Promise((resolve) => {
    const started = performance.now();
    const settle = (due: number, status: number) => {
      histogram.record(performance.now() - due);
      if (status === 200) ok += 1;
      else failed += 1;
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      finished += 1;
      if (finished === total) {
        agent.destroy();
        resolve({ histogram, ok, failed, statuses });
      }
    };
    const send = (index: number, due: number) => {
      const { path, headers } = options.next(index);
      void httpGet(agent, target, path, headers).then((status) => settle(due, status));
    };
    const tick = () => {
      const now = performance.now();
      while (sent < total && started + sent * intervalMs <= now) {
        send(sent, started + sent * intervalMs);
        sent += 1;
      }
      if (sent < total) setTimeout(tick, Math.max(0, started + sent * intervalMs - performance.now()));
    };
    tick();
  });
}
