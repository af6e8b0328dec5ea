import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM_CONTEXT } from '../../src/runtime/actor.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const PASSWORD = 'correct horse battery staple';
const INVENTORY = {
  name: 'build-agent-1',
  hostname: 'agent1.acme.internal',
  os: 'linux',
  osVersion: '6.1',
  architecture: 'x86_64',
  ipv4: ['10.0.0.7'],
  ipv6: ['fe80::1'],
  tags: ['ci', 'eu'],
  version: '2.4.0',
};

describe.each(DRIVERS)('machine clients on %s', (driver) => {
  let env: TestEnv;
  let a: { id: string; slug: string; key: string };
  let b: { id: string; slug: string; key: string };
  let adminToken: string;
  let memberToken: string;

  const as = (token: string, tenant: { slug: string }, options: Parameters<TestEnv['inject']>[0]) =>
    env.inject({
      ...options,
      headers: { host: `${tenant.slug}.localhost`, authorization: `Bearer ${token}` },
    });
  const login = async (email: string) =>
    (await env.inject({ method: 'POST', url: '/auth/login', payload: { email, password: PASSWORD } })).json()
      .token as string;

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    a = await env.createTenant('cli-a');
    b = await env.createTenant('cli-b');
    const { users, operator } = {
      users: env.engine.identity.users,
      operator: env.engine.identity.operator.bind(env.engine.identity),
    };
    await users.create(operator(a.id, SYSTEM_CONTEXT), {
      email: 'admin@cli-a.test',
      password: PASSWORD,
      roles: ['tenant-admin'],
    });
    await users.create(operator(a.id, SYSTEM_CONTEXT), {
      email: 'member@cli-a.test',
      password: PASSWORD,
      roles: ['read-only'],
    });
    adminToken = await login('admin@cli-a.test');
    memberToken = await login('member@cli-a.test');
  });
  afterAll(async () => env?.close());

  it('issues credentials once, connects the client to its tenant, and lists it with its inventory', async () => {
    const created = await as(adminToken, a, {
      method: 'POST',
      url: '/api/v1/clients',
      payload: { name: 'agent one' },
    });
    expect(created.statusCode, created.body).toBe(201);
    const { clientId, clientSecret, warning } = created.json();
    expect(clientId).toMatch(/^tnc_[0-9a-f]{16}$/);
    expect(warning).toMatch(/only once/);
    const { rows } = await env.engine.db.owner.query<{ hash: Buffer }>(
      'SELECT hash FROM tenantry.clients WHERE client_id = $1',
      [clientId],
    );
    expect(Buffer.from(rows[0]!.hash).toString('base64url')).not.toBe(clientSecret);

    const connected = await env.inject({
      method: 'POST',
      url: '/clients/connect',
      payload: { clientId, clientSecret, inventory: INVENTORY },
      remoteAddress: '192.0.2.10',
    });
    expect(connected.statusCode, connected.body).toBe(200);
    expect(connected.json()).toMatchObject({ clientId, tenantId: a.id });
    const heartbeat = await env.inject({
      method: 'POST',
      url: '/clients/heartbeat',
      headers: { authorization: `Bearer ${connected.json().connectionToken}` },
      payload: { inventory: { ...INVENTORY, version: '2.4.1' } },
      remoteAddress: '192.0.2.11',
    });
    expect(heartbeat.statusCode, heartbeat.body).toBe(200);

    const listed = await as(adminToken, a, { url: '/api/v1/clients' });
    expect(listed.statusCode).toBe(200);
    expect(listed.json().items).toEqual([
      expect.objectContaining({
        clientId,
        state: 'connected',
        lastAddress: '192.0.2.11',
        inventory: expect.objectContaining({ hostname: 'agent1.acme.internal', version: '2.4.1' }),
      }),
    ]);
    expect(JSON.stringify(listed.json())).not.toContain(clientSecret);
    // Another tenant sees none of it; a read-only member may not list clients.
    expect(
      (await env.inject({ url: '/api/v1/clients', headers: { 'x-api-key': b.key } })).json().items,
    ).toEqual([]);
    expect((await as(memberToken, a, { url: '/api/v1/clients' })).statusCode).toBe(403);
    expect(
      (await as(memberToken, a, { method: 'POST', url: '/api/v1/clients', payload: { name: 'x' } }))
        .statusCode,
    ).toBe(403);
  });

  it('refuses wrong secrets alike, bad inventories, and revoked clients', async () => {
    const created = (
      await as(adminToken, a, { method: 'POST', url: '/api/v1/clients', payload: { name: 'agent two' } })
    ).json();
    const connect = (body: Record<string, unknown>) =>
      env.inject({
        method: 'POST',
        url: '/clients/connect',
        payload: { inventory: {}, ...body },
        remoteAddress: '192.0.2.20',
      });
    const wrong = await connect({ clientId: created.clientId, clientSecret: 'x'.repeat(43) });
    const unknown = await connect({ clientId: 'tnc_0000000000000000', clientSecret: created.clientSecret });
    for (const response of [wrong, unknown]) {
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({ code: 'invalid_credentials' });
    }
    const huge = await connect({
      clientId: created.clientId,
      clientSecret: created.clientSecret,
      inventory: { tags: Array(500).fill('t') },
    });
    expect(huge.statusCode).toBe(400);
    const badIp = await connect({
      clientId: created.clientId,
      clientSecret: created.clientSecret,
      inventory: { ipv4: ['999.1.1.1'] },
    });
    expect(badIp.statusCode).toBe(400);
    const noSecret = await connect({ clientId: created.clientId });
    expect(noSecret.statusCode).toBe(400);
    expect(noSecret.json()).toMatchObject({
      code: 'validation_failed',
      field: 'clientSecret',
      detail: 'clientSecret is required',
    });
    expect(
      (await as(adminToken, a, { method: 'DELETE', url: `/api/v1/clients/${created.client.id}` })).statusCode,
    ).toBe(204);
    expect(
      (await connect({ clientId: created.clientId, clientSecret: created.clientSecret })).statusCode,
    ).toBe(401);
    // Another tenant cannot revoke a's client.
    const third = (
      await as(adminToken, a, { method: 'POST', url: '/api/v1/clients', payload: { name: 'agent three' } })
    ).json();
    const other = await env.inject({
      method: 'DELETE',
      url: `/api/v1/clients/${third.client.id}`,
      headers: { 'x-api-key': b.key },
    });
    expect(other.statusCode).toBe(404);
  });

  it('keeps orphaned clients out of every tenant listing, visible to global admins only', async () => {
    const doomed = await env.createTenant('cli-doomed');
    await env.engine.identity.users.create(env.engine.identity.operator(doomed.id, SYSTEM_CONTEXT), {
      email: 'admin@doomed.test',
      password: PASSWORD,
      roles: ['tenant-admin'],
    });
    const doomedToken = await login('admin@doomed.test');
    const created = (
      await as(doomedToken, doomed, {
        method: 'POST',
        url: '/api/v1/clients',
        payload: { name: 'left behind' },
      })
    ).json();
    const loose = await env.admin('POST', '/admin/clients', { name: 'no tenant at all' });
    expect(loose.statusCode).toBe(201);
    expect((await env.admin('DELETE', `/admin/tenants/${doomed.slug}`)).statusCode).toBe(200);

    const orphaned = (await env.admin('GET', '/admin/clients?orphaned=true')).json().items;
    expect(orphaned.map((client: { clientId: string }) => client.clientId).sort()).toEqual(
      [created.clientId, loose.json().clientId].sort(),
    );
    expect(
      orphaned.every(
        (client: { orphaned: boolean; tenantId: unknown }) => client.orphaned && client.tenantId === null,
      ),
    ).toBe(true);
    const all = (await env.admin('GET', '/admin/clients')).json().items;
    expect(all.find((client: { tenantSlug: string }) => client.tenantSlug === a.slug)).toBeDefined();
    for (const tenant of [a, b]) {
      const listed = (
        await env.inject({ url: '/api/v1/clients', headers: { 'x-api-key': tenant.key } })
      ).json().items;
      expect(listed.map((client: { clientId: string }) => client.clientId)).not.toContain(created.clientId);
      expect(listed.map((client: { clientId: string }) => client.clientId)).not.toContain(
        loose.json().clientId,
      );
    }
    // An orphan may still connect (operators see its inventory) but is mapped to no tenant.
    const connected = await env.inject({
      method: 'POST',
      url: '/clients/connect',
      payload: { clientId: created.clientId, clientSecret: created.clientSecret, inventory: INVENTORY },
    });
    expect(connected.statusCode).toBe(200);
    expect(connected.json().tenantId).toBeNull();
    // Tenant users' sessions never reach the admin listing.
    expect(
      (await env.inject({ url: '/admin/clients', headers: { authorization: `Bearer ${adminToken}` } }))
        .statusCode,
    ).toBe(403);
  });

  it('a client sent to another tenant’s host is refused (403 cross_tenant), audited under both, nothing written', async () => {
    // A client of tenant b, sent to tenant a's host.
    const created = await env.tenantry.clients.create({ tenant: b.slug, name: 'misdirected' });
    const connect = (host: string) =>
      env.inject({
        method: 'POST',
        url: '/clients/connect',
        headers: { host },
        payload: { clientId: created.clientId, clientSecret: created.clientSecret, inventory: INVENTORY },
      });
    const refused = await connect(`${a.slug}.localhost`);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'cross_tenant' });
    const { rows } = await env.engine.db.owner.query<{ connected: boolean }>(
      'SELECT connected_at IS NOT NULL AS connected FROM tenantry.clients WHERE client_id = $1',
      [created.clientId],
    );
    expect(rows[0]?.connected).toBe(false);
    for (const tenant of [a, b]) {
      const audit = (
        await env.admin('GET', `/admin/audit?tenant=${tenant.slug}&action=resolve.cross_tenant`)
      ).json();
      expect(
        audit.entries.some((entry: { actor: string }) => entry.actor === `client:${created.clientId}`),
        tenant.slug,
      ).toBe(true);
    }
    // Its own tenant's host, or the service's own: connected.
    const own = await connect(`${b.slug}.localhost`);
    expect(own.statusCode, own.body).toBe(200);
    const token = own.json().connectionToken as string;
    const beat = (host: string, payload?: unknown) =>
      env.inject({
        method: 'POST',
        url: '/clients/heartbeat',
        headers: { host, authorization: `Bearer ${token}` },
        ...(payload === undefined ? {} : { payload: payload as object }),
      });
    expect((await beat(`${a.slug}.localhost`, {})).statusCode).toBe(403);
    // The inventory is optional: a heartbeat may have no body at all.
    const bare = await beat(`${b.slug}.localhost`);
    expect(bare.statusCode, bare.body).toBe(200);
  });
});
