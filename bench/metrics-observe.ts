import type { Queryable } from '../src/db/database.js';
import { Metrics } from '../src/runtime/metrics.js';

/**
 * What recording one request in the Prometheus metrics costs (the tenant scope's `onResponse`
 * hook), against an empty loop of the same length: one tenant label, one route, warmed up.
 */
export function benchMetricsObserve(calls = 500_000): string {
  const control: Queryable = { query: async () => ({ rows: [], rowCount: 0 }) };
  const metrics = new Metrics({ tenantLabels: 50, control });
  const time = (fn: (i: number) => void) => {
    for (let i = 0; i < 50_000; i += 1) fn(i);
    const started = performance.now();
    for (let i = 0; i < calls; i += 1) fn(i);
    return ((performance.now() - started) * 1000) / calls;
  };
  let sink = 0;
  const baseline = time((i) => {
    sink += i % 7;
  });
  const observe = time(() => metrics.observeRequest('acme', '/tenant-info', 'GET', 200, 0.001));
  return [
    '### Metrics: recording one request',
    '',
    `${calls.toLocaleString('en')} calls after 50,000 warm-up calls (sink ${sink % 10}).`,
    '',
    '| what | per call |',
    '| --- | ---: |',
    `| empty loop (baseline) | ${baseline.toFixed(3)} µs |`,
    `| \`Metrics.observeRequest\` (counter + histogram, bounded tenant label) | ${observe.toFixed(3)} µs |`,
    '',
  ].join('\n');
}
