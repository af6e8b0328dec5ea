import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { RequestMetrics } from '../../src/runtime/request-metrics.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];

function lines(page: string, name: string): string[] {
  return page
    .split('\n')
    .filter((line) => line.startsWith(name))
    .sort();
}

/** The same observations through prom-client's own Counter and Histogram: the reference page. */
async function referencePage(observations: [string, string, string, number, number][]): Promise<string> {
  const registry = new Registry();
  const counter = new Counter({
    name: 'requests_total',
    help: 'requests',
    labelNames: ['tenant', 'route', 'method', 'status'],
    registers: [registry],
  });
  const histogram = new Histogram({
    name: 'request_seconds',
    help: 'latency',
    labelNames: ['tenant', 'route', 'method'],
    buckets: BUCKETS,
    registers: [registry],
  });
  for (const [tenant, route, method, status, seconds] of observations) {
    counter.inc({ tenant, route, method, status: String(status) });
    histogram.observe({ tenant, route, method }, seconds);
  }
  return registry.metrics();
}

function recorded(observations: [string, string, string, number, number][]) {
  const registry = new Registry();
  const metrics = new RequestMetrics({
    registry,
    counterName: 'requests_total',
    counterHelp: 'requests',
    histogramName: 'request_seconds',
    histogramHelp: 'latency',
    buckets: BUCKETS,
  });
  for (const observation of observations) metrics.observe(...observation);
  return { registry, metrics };
}

/** Label order inside the braces differs between the two; compare label sets, not text. */
function normalise(line: string): string {
  const match = /^([^{ ]+)(?:\{(.*)\})? (.+)$/.exec(line);
  if (!match) return line;
  const labels = (match[2] ?? '')
    .split(/,(?=[a-z]+=")/)
    .filter(Boolean)
    .sort()
    .join(',');
  return `${match[1]}{${labels}} ${Number(match[3])}`;
}

describe('request metrics', () => {
  const observations: [string, string, string, number, number][] = [
    ['acme', '/tenant-info', 'GET', 200, 0.0004],
    ['acme', '/tenant-info', 'GET', 200, 0.001],
    ['acme', '/tenant-info', 'GET', 429, 0.05],
    ['acme', '/api/v1/:entity', 'POST', 201, 3],
    ['other', '/tenant-info', 'GET', 200, 0.02],
    ['none', 'unmatched', 'GET', 404, 0.0001],
  ];

  it('exposes exactly what prom-client Counter and Histogram expose for the same requests', async () => {
    const expected = await referencePage(observations);
    const page = await recorded(observations).registry.metrics();
    for (const name of ['requests_total', 'request_seconds']) {
      expect(lines(page, name).map(normalise).sort()).toEqual(lines(expected, name).map(normalise).sort());
    }
    expect(page).toContain('# TYPE requests_total counter');
    expect(page).toContain('# TYPE request_seconds histogram');
    // A boundary value falls in its own bucket (le is inclusive), as in Prometheus.
    expect(page).toContain(
      'request_seconds_bucket{tenant="acme",route="/tenant-info",method="GET",le="0.001"} 2',
    );
  });

  it('forgets a demoted tenant and escapes label values', async () => {
    const { registry, metrics } = recorded([...observations, ['we"ird\\', '/x', 'GET', 200, 0.1]]);
    metrics.removeTenant('acme');
    const page = await registry.metrics();
    expect(page).not.toContain('tenant="acme"');
    expect(page).toContain('tenant="other"');
    expect(page).toContain('tenant="we\\"ird\\\\"');
  });
});
