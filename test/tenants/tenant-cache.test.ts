import { describe, expect, it } from 'vitest';
import { defineConfig } from '../../src/config/load-config.js';
import { TenantCache } from '../../src/resolve/tenant-cache.js';
import { ChangeBus } from '../../src/runtime/change-bus.js';
import type { Tenant } from '../../src/tenants/tenant.js';
import { startTestEnv } from '../helpers/harness.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function tenant(id: string, name = `Tenant ${id}`): Tenant {
  return { id, slug: `t-${id}`, name, status: 'active', isolation: 'row' } as Tenant;
}

/** A refresh source over `rows`, recording each batch of ids it is asked for. */
function source(rows: Map<string, Tenant>, options: { waitFor?: Promise<void> } = {}) {
  const batches: string[][] = [];
  const refresh = async (ids: readonly string[]) => {
    batches.push([...ids].sort());
    await options.waitFor;
    return ids.flatMap((id) => (rows.has(id) ? [rows.get(id)!] : []));
  };
  return { batches, refresh };
}

describe('the tenant cache refreshed ahead', () => {
  it('keeps answering past its time and reads every tenant due in one query', async () => {
    const rows = new Map(['a', 'b', 'c'].map((id) => [id, tenant(id)]));
    const { batches, refresh } = source(rows);
    const cache = new TenantCache(new ChangeBus(), { ttlMs: 40, refresh, refreshBatchMs: 20 });
    for (const row of rows.values()) cache.setTenant(row, cache.generation);
    await sleep(60);
    rows.set('a', tenant('a', 'Renamed around Tenantry'));
    // Due: still answered from memory, at once, while the refresh is gathered.
    expect(cache.tenant('a')?.name).toBe('Tenant a');
    expect(cache.tenant('b')?.name).toBe('Tenant b');
    expect(cache.tenant('a')?.name).toBe('Tenant a');
    expect(batches).toEqual([]);
    await sleep(40);
    expect(batches).toEqual([['a', 'b']]);
    expect(cache.tenant('a')?.name).toBe('Renamed around Tenantry');
    // Renewed: not due again until its time has passed once more.
    cache.tenant('a');
    await sleep(30);
    expect(batches).toHaveLength(1);
    cache.close();
  });

  it('stops serving a tenant whose row is gone', async () => {
    const rows = new Map([['a', tenant('a')]]);
    const { refresh } = source(rows);
    const cache = new TenantCache(new ChangeBus(), { ttlMs: 20, refresh, refreshBatchMs: 5 });
    cache.setTenant(tenant('a'), cache.generation);
    rows.delete('a');
    await sleep(30);
    expect(cache.tenant('a')).toBeDefined();
    await sleep(30);
    expect(cache.tenant('a')).toBeUndefined();
    cache.close();
  });

  it('does not put back a tenant that a notified change dropped while the refresh ran', async () => {
    const bus = new ChangeBus();
    const rows = new Map([['a', tenant('a', 'read before the change')]]);
    let release = () => {};
    const waitFor = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { batches, refresh } = source(rows, { waitFor });
    const cache = new TenantCache(bus, { ttlMs: 20, refresh, refreshBatchMs: 5 });
    cache.setTenant(tenant('a'), cache.generation);
    await sleep(30);
    cache.tenant('a');
    await sleep(20);
    expect(batches).toHaveLength(1);
    // The change lands while the query is out; its answer predates the change.
    bus.applied({ kind: 'tenant', tenantId: 'a' });
    release();
    await sleep(10);
    expect(cache.tenant('a')).toBeUndefined();
    cache.close();
  });

  it('without a refresh source, lets entries expire at their time', async () => {
    const cache = new TenantCache(new ChangeBus(), { ttlMs: 20 });
    cache.setTenant(tenant('a'), cache.generation);
    expect(cache.tenant('a')).toBeDefined();
    await sleep(40);
    expect(cache.tenant('a')).toBeUndefined();
  });

  it('forgets a tenant nobody asked for after ten times its time', async () => {
    const { batches, refresh } = source(new Map([['a', tenant('a')]]));
    const cache = new TenantCache(new ChangeBus(), { ttlMs: 10, refresh, refreshBatchMs: 5 });
    cache.setTenant(tenant('a'), cache.generation);
    await sleep(150);
    expect(cache.tenant('a')).toBeUndefined();
    expect(batches).toEqual([]);
    cache.close();
  });
});

describe('tenancy.cacheSize', () => {
  it('defaults to 20,000 tenants, with 20,000 verified keys beside them', () => {
    const config = defineConfig({});
    expect(config.tenancy.cacheSize).toBe(20_000);
    expect(config.apiKeys.cacheSize).toBe(20_000);
  });

  it('bounds the tenants a process keeps, and every tenant is still served', async () => {
    const env = await startTestEnv('pglite', { tenancy: { cacheSize: 2 } });
    try {
      const tenants = [];
      for (const slug of ['bound-a', 'bound-b', 'bound-c']) tenants.push(await env.createTenant(slug));
      for (let round = 0; round < 2; round += 1) {
        for (const tenant of tenants) {
          const response = await env.inject({ url: '/tenant-info', headers: { 'x-api-key': tenant.key } });
          expect(response.statusCode).toBe(200);
          expect(response.json().id).toBe(tenant.id);
        }
      }
      expect(env.engine.tenantCache.size).toBe(2);
    } finally {
      await env.close();
    }
  });
});

describe('a refresh that fails', () => {
  it('keeps the tenants served, reports once, and waits before it tries again', async () => {
    let calls = 0;
    const errors: unknown[] = [];
    const cache = new TenantCache(new ChangeBus(), {
      ttlMs: 60,
      refreshBatchMs: 5,
      refresh: async () => {
        calls += 1;
        throw new Error('database down');
      },
      onRefreshError: (error) => errors.push(error),
    });
    cache.setTenant(tenant('a'), cache.generation);
    await sleep(70);
    // Due, failing to refresh, and still within ten times its time: served all along.
    for (let n = 0; n < 10; n += 1) {
      expect(cache.tenant('a')?.id).toBe('a');
      await sleep(10);
    }
    expect(calls).toBe(1);
    expect(errors).toHaveLength(1);
    cache.close();
  });
});
