import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { holdWrites } from '../helpers/hold-writes.js';

describe.each(DRIVERS)('concurrent writes on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, { database: { maxConnections: 8 } });
  });
  afterAll(async () => {
    await env?.close();
  });

  it('eight concurrent creates with one slug yield exactly one tenant', async () => {
    const responses = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        env.admin('POST', '/admin/tenants', { name: `Racer ${i}`, slug: 'racer' }),
      ),
    );
    const statuses = responses.map((r) => r.statusCode).sort();
    expect(statuses).toEqual([201, 409, 409, 409, 409, 409, 409, 409]);
    for (const conflict of responses.filter((r) => r.statusCode === 409)) {
      expect(conflict.json()).toMatchObject({ code: 'conflict', field: 'slug' });
    }
    const { rows } = await env.engine.db.owner.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM tenantry.tenants WHERE slug = 'racer'",
    );
    expect(rows[0]!.n).toBe(1);
    const keys = await env.engine.db.owner.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM tenantry.api_keys',
    );
    expect(keys.rows[0]!.n).toBe(1);
  });

  it('concurrent host claims by two tenants: exactly one wins', async () => {
    await env.createTenant('left');
    await env.createTenant('right');
    const [a, b] = await Promise.all([
      env.admin('POST', '/admin/tenants/left/hosts', { host: 'contested.example.com' }),
      env.admin('POST', '/admin/tenants/right/hosts', { host: 'contested.example.com' }),
    ]);
    expect([a!.statusCode, b!.statusCode].sort()).toEqual([200, 409]);
  });

  it('a slug and its <slug>.<baseDomain> host claimed at once: the slug is created, the host refused', async () => {
    await env.createTenant('holder');
    // On PostgreSQL each is held at its write until both have checked (or are done, or wait for
    // their turn), so neither decides on what the other has not written yet.
    const held =
      driver === 'postgres'
        ? await holdWrites(env.databaseUrl!, ['tenantry.tenants', 'tenantry.tenant_hosts'])
        : undefined;
    let settled = 0;
    const claiming = Promise.all(
      [
        env.admin('POST', '/admin/tenants/holder/hosts', { host: 'newcomer.localhost' }),
        env.admin('POST', '/admin/tenants', { name: 'Newcomer', slug: 'newcomer' }),
      ].map((claim) => claim.finally(() => (settled += 1))),
    );
    await held?.releaseWhen((waiting) => waiting + settled >= 2);
    const [host, created] = await claiming;
    // `newcomer.localhost` belongs to the tenant whose slug is `newcomer`, whichever came first.
    expect([host!.statusCode, created!.statusCode]).toEqual([409, 201]);
    expect(host!.json()).toMatchObject({ code: 'conflict', field: 'hosts/0' });
    const { rows } = await env.engine.db.owner.query<{ slugs: number; hosts: number }>(
      `SELECT (SELECT count(*)::int FROM tenantry.tenants WHERE slug = 'newcomer') AS slugs,
              (SELECT count(*)::int FROM tenantry.tenant_hosts WHERE host = 'newcomer.localhost') AS hosts`,
    );
    expect(rows[0]).toEqual({ slugs: 1, hosts: 0 });
  });
});
