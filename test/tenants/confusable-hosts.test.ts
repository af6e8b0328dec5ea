import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fillHostSkeletons } from '../../src/tenants/tenant-rules.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

// A tenant that registers a host looking like another tenant's could phish that tenant's users
// from a login page served under its own, legitimate-looking address.
describe.each(DRIVERS)('hosts that look alike on %s', (driver) => {
  let env: TestEnv;
  beforeAll(async () => {
    env = await startTestEnv(driver, { server: { baseDomain: 'coop.example' } });
    await env.createTenant('icme', {
      hosts: ['icme.example.com', 'strasse.example.com', 'good.example.com'],
    });
  });
  afterAll(async () => {
    await env?.close();
  });

  it.each([
    ['dotless i', 'ıcme.example.com', 'icme.example.com'],
    ['sharp s, which folds to ss', 'straße.example.com', 'strasse.example.com'],
    ['script g', 'ɡood.example.com', 'good.example.com'],
  ])('refuses %s', async (_name, host, original) => {
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Lookalike',
      slug: 'lookalike',
      hosts: [host],
    });
    expect(response.statusCode).toBe(409);
    expect(response.json()).toMatchObject({ code: 'conflict', field: 'hosts/0' });
    expect(response.json().detail).toContain(`looks like ${original}`);
    expect((await env.admin('GET', '/admin/tenants/lookalike')).statusCode).toBe(404);
  });

  it('lets a tenant hold lookalikes of its own hosts, and keeps distinct ASCII hosts apart', async () => {
    const own = await env.admin('POST', '/admin/tenants/icme/hosts', { host: 'straße.example.com' });
    expect(own.statusCode).toBe(200);
    const other = await env.createTenant('rn-co', { hosts: ['rn.example.com'] });
    const ascii = await env.admin('POST', '/admin/tenants/rn-co/hosts', { host: 'm.example.com' });
    expect(ascii.statusCode, 'rn and m are told apart in ASCII').toBe(200);
    const added = await env.admin('POST', `/admin/tenants/${other.id}/hosts`, { host: 'ıcme.example.com' });
    expect(added.statusCode).toBe(409);
  });

  it('refuses a host that imitates the base domain', async () => {
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Mimic',
      slug: 'mimic',
      hosts: ['icme.coop.exɑmple'],
    });
    expect(response.statusCode).toBe(409);
    expect(response.json().detail).toContain('looks like a host under coop.example');
  });

  it('compares hosts stored before skeletons existed once start-up fills theirs in', async () => {
    const legacy = await env.createTenant('legacy');
    await env.engine.db.owner.query('INSERT INTO tenantry.tenant_hosts (host, tenant_id) VALUES ($1, $2)', [
      'acme.example.org',
      legacy.id,
    ]);
    await fillHostSkeletons(env.engine.db.owner);
    const response = await env.admin('POST', '/admin/tenants', {
      name: 'Phish',
      slug: 'phish',
      hosts: ['ɑcme.example.org'],
    });
    expect(response.statusCode).toBe(409);
    expect(response.json().detail).toContain('looks like acme.example.org');
  });
});
