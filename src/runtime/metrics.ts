import { Counter, collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Queryable } from '../db/database.js';
import { TenantHistogram } from './histogram-cells.js';
import { QUOTA_NAMES, type QuotaName } from './quota.js';
import { RequestMetrics } from './request-metrics.js';

/** The label of requests without a tenant, and of tenants outside the top N. */
export const NO_TENANT = 'none';
export const OTHER_TENANTS = 'other';

const LIMIT_REASONS = ['rate', 'concurrency', 'key_failures', 'login_failures'] as const;
export type LimitReason = (typeof LIMIT_REASONS)[number];

export interface TenantLabelsOptions {
  /** Tenants that keep a label of their own: the busiest ones. */
  readonly max: number;
  /** How often the busiest tenants are recomputed. */
  readonly rebalanceMs?: number;
  readonly now?: () => number;
}

/**
 * Bounded tenant labels: the `max` busiest tenants keep their slug as label, every other tenant
 * shares `other`, so a deployment of 10,000 tenants exposes at most `max + 2` tenant values.
 * Traffic is counted per window; at each rebalance the busiest of the last window take the
 * labels, and a tenant that lost its label has its series removed (`onDemote`).
 */
export class TenantLabels {
  readonly #max: number;
  readonly #rebalanceMs: number;
  readonly #now: () => number;
  readonly #labelled = new Set<string>();
  #counts = new Map<string, number>();
  #windowStart: number;
  onDemote: (tenant: string) => void = () => undefined;

  constructor(options: TenantLabelsOptions) {
    this.#max = Math.max(0, options.max);
    this.#rebalanceMs = options.rebalanceMs ?? 60_000;
    this.#now = options.now ?? Date.now;
    this.#windowStart = this.#now();
  }

  /** The label for a request of `tenant` (a slug), counting it. */
  label(tenant: string | undefined): string {
    if (tenant === undefined) return NO_TENANT;
    if (this.#now() - this.#windowStart >= this.#rebalanceMs) this.#rebalance();
    // Counting is bounded too: past 10 × max distinct tenants in a window, newcomers are not counted.
    const count = this.#counts.get(tenant);
    if (count !== undefined || this.#counts.size < Math.max(100, this.#max * 10))
      this.#counts.set(tenant, (count ?? 0) + 1);
    if (this.#labelled.has(tenant)) return tenant;
    if (this.#labelled.size < this.#max) {
      this.#labelled.add(tenant);
      return tenant;
    }
    return OTHER_TENANTS;
  }

  /** The label of a tenant, without counting traffic (its requests are counted when they end). */
  labelOf(tenant: string): string {
    if (this.#labelled.has(tenant)) return tenant;
    if (this.#labelled.size < this.#max) {
      this.#labelled.add(tenant);
      return tenant;
    }
    return OTHER_TENANTS;
  }

  #rebalance(): void {
    const busiest = new Set(
      [...this.#counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, this.#max)
        .map(([tenant]) => tenant),
    );
    for (const tenant of this.#labelled) {
      if (!busiest.has(tenant)) {
        this.#labelled.delete(tenant);
        this.onDemote(tenant);
      }
    }
    for (const tenant of busiest) if (this.#labelled.size < this.#max) this.#labelled.add(tenant);
    this.#counts = new Map();
    this.#windowStart = this.#now();
  }
}

export interface MetricsOptions {
  readonly tenantLabels: number;
  /** Counts tenants by status, plan and isolation when scraped. */
  readonly control: Queryable;
  /** Pools to tenant databases: open and leased, when scraped. */
  readonly tenantPools?: () => { open: number; leased: number; max: number };
  readonly rebalanceMs?: number;
}

/**
 * The Prometheus metrics of one engine, in a registry of its own (several engines in a process,
 * as in tests, never share series): requests by tenant, route and status, their latency,
 * tenant database time, tenants by status, plan and isolation, pool usage, and the process.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly labels: TenantLabels;
  readonly #requests: RequestMetrics;
  readonly #dbDuration: TenantHistogram;
  readonly #limited: Counter<'tenant' | 'reason'>;
  readonly #quotaRefused: Counter<'tenant' | 'quota'>;
  readonly #limiterFallback: Counter<'limiter'>;
  readonly #redisUp: Gauge;
  readonly #cache: Counter<'outcome'>;
  readonly #cacheSkipped: Counter<'operation'>;

  constructor(options: MetricsOptions) {
    this.labels = new TenantLabels({
      max: options.tenantLabels,
      ...(options.rebalanceMs === undefined ? {} : { rebalanceMs: options.rebalanceMs }),
    });
    const registers = [this.registry];
    this.#requests = new RequestMetrics({
      registry: this.registry,
      counterName: 'tenantry_http_requests_total',
      counterHelp:
        'HTTP requests by tenant (the busiest keep their slug, the rest share "other"), route and status',
      histogramName: 'tenantry_http_request_duration_seconds',
      histogramHelp: 'HTTP request latency by tenant and route',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    });
    this.#dbDuration = new TenantHistogram({
      registry: this.registry,
      name: 'tenantry_tenant_db_duration_seconds',
      help: 'Time of tenant database statements and transactions, by tenant',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
    });
    this.#limited = new Counter({
      name: 'tenantry_rate_limited_total',
      help: 'Requests refused with 429, by tenant and reason (rate, concurrency, key_failures)',
      labelNames: ['tenant', 'reason'],
      registers,
    });
    this.#quotaRefused = new Counter({
      name: 'tenantry_quota_refused_total',
      help: 'Writes refused with quota_exceeded, by tenant and quota',
      labelNames: ['tenant', 'quota'],
      registers,
    });
    this.#limiterFallback = new Counter({
      name: 'tenantry_limiter_fallback_total',
      help: 'Limit decisions taken by this process alone because Redis did not answer',
      labelNames: ['limiter'],
      registers,
    });
    this.#redisUp = new Gauge({
      name: 'tenantry_redis_up',
      help: '1 while Redis answers (limits and cache shared by every process), 0 while it does not',
      registers,
    });
    this.#cache = new Counter({
      name: 'tenantry_cache_reads_total',
      help: 'Reads of the tenant-scoped cache: hit, miss, foreign (a value of another tenant, refused), unavailable (Redis down)',
      labelNames: ['outcome'],
      registers,
    });
    this.#cacheSkipped = new Counter({
      name: 'tenantry_cache_skipped_total',
      help: 'Writes to the tenant-scoped cache the store could not take (Redis down; in process, while invalidations may be lost), by operation: set, del, clear',
      labelNames: ['operation'],
      registers,
    });
    this.labels.onDemote = (tenant) => this.#removeTenant(tenant);
    registerTenantsGauge(options.control, registers);
    if (options.tenantPools) registerPoolsGauge(options.tenantPools, registers);
    collectDefaultMetrics({ register: this.registry, prefix: 'tenantry_' });
  }

  #removeTenant(tenant: string): void {
    this.#requests.removeTenant(tenant);
    this.#dbDuration.remove(tenant);
    // prom-client removes a series only by its whole label set: each value of the other label.
    for (const reason of LIMIT_REASONS) this.#limited.remove({ tenant, reason });
    for (const quota of QUOTA_NAMES) this.#quotaRefused.remove({ tenant, quota });
  }

  /** One finished HTTP request. `route` is the route pattern, never the raw URL. */
  observeRequest(
    tenant: string | undefined,
    route: string,
    method: string,
    status: number,
    seconds: number,
  ): void {
    this.#requests.observe(this.labels.label(tenant), route, method, status, seconds);
  }

  observeDatabase(tenant: string, seconds: number): void {
    this.#dbDuration.observe(this.labels.labelOf(tenant), seconds);
  }

  /** A request refused by a limit; `tenant` is a slug, or undefined before a tenant is known. */
  rateLimited(tenant: string | undefined, reason: LimitReason): void {
    this.#limited.inc({ tenant: tenant === undefined ? NO_TENANT : this.labels.labelOf(tenant), reason });
  }

  quotaRefused(tenant: string, quota: QuotaName): void {
    this.#quotaRefused.inc({ tenant: this.labels.labelOf(tenant), quota });
  }

  limiterFallback(limiter: 'tenant_limits' | 'key_failures' | 'login_failures'): void {
    this.#limiterFallback.inc({ limiter });
  }

  cacheRead(outcome: 'hit' | 'miss' | 'foreign' | 'unavailable'): void {
    this.#cache.inc({ outcome });
  }

  cacheSkipped(operation: 'set' | 'del' | 'clear'): void {
    this.#cacheSkipped.inc({ operation });
  }

  redisUp(up: boolean): void {
    this.#redisUp.set(up ? 1 : 0);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Tenants by status, plan and isolation, counted in the control database when scraped. */
function registerTenantsGauge(control: Queryable, registers: Registry[]): void {
  new Gauge({
    name: 'tenantry_tenants',
    help: 'Tenants by status, plan and isolation level',
    labelNames: ['status', 'plan', 'isolation'],
    registers,
    async collect() {
      const { rows } = await control.query<{
        status: string;
        plan: string;
        isolation: string;
        count: number;
      }>(
        `SELECT status, coalesce(config->>'plan', '') AS plan, isolation, count(*)::int AS count
             FROM tenantry.tenants GROUP BY 1, 2, 3`,
      );
      this.reset();
      for (const row of rows) {
        this.set(
          { status: row.status, plan: row.plan || 'none', isolation: row.isolation },
          Number(row.count),
        );
      }
    },
  });
}

function registerPoolsGauge(
  pools: () => { open: number; leased: number; max: number },
  registers: Registry[],
): void {
  new Gauge({
    name: 'tenantry_tenant_database_pools',
    help: 'Connection pools to database tenants: open, leased (in use) and the most allowed',
    labelNames: ['state'],
    registers,
    collect() {
      const { open, leased, max } = pools();
      this.set({ state: 'open' }, open);
      this.set({ state: 'leased' }, leased);
      this.set({ state: 'max' }, max);
    },
  });
}
