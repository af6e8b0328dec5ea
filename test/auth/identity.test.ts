import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { SYSTEM_CONTEXT } from '../../src/runtime/actor.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';
import { slowHashRuns } from '../helpers/slow-hash-runs.js';

vi.mock('node:crypto', async (original) =>
  (await import('../helpers/slow-hash-runs.js')).recordingCrypto(await original()),
);

const PASSWORD = 'correct horse battery staple';

describe.each(DRIVERS)('tenant users, roles, groups and sessions on %s', (driver) => {
  let env: TestEnv;
  let a: { id: string; slug: string; key: string };
  let b: { id: string; slug: string; key: string };
  let adminToken: string;
  let adminId: string;
  let bUserId: string;

  const hostOf = (tenant: { slug: string }) => `${tenant.slug}.localhost`;
  const as = (token: string, tenant: { slug: string }, options: InjectOptions) =>
    env.inject({
      ...options,
      headers: { host: hostOf(tenant), authorization: `Bearer ${token}`, ...(options.headers ?? {}) },
    });
  const login = async (
    email: string,
    password: string,
    tenant?: { slug: string },
    remoteAddress = '10.1.1.1',
  ) =>
    env.inject({
      method: 'POST',
      url: '/auth/login',
      headers: tenant ? { host: hostOf(tenant) } : {},
      payload: { email, password },
      remoteAddress,
    });
  const tokenOf = async (email: string, tenant: { slug: string }) => {
    const response = await login(email, PASSWORD, tenant);
    expect(response.statusCode, response.body).toBe(200);
    return response.json().token as string;
  };
  const createUser = async (token: string, body: Record<string, unknown>, tenant: { slug: string } = a) =>
    as(token, tenant, { method: 'POST', url: '/api/v1/users', payload: { password: PASSWORD, ...body } });

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
    a = await env.createTenant('idn-a');
    b = await env.createTenant('idn-b', { isolation: 'schema' });
    const identity = env.engine.identity;
    const created = await identity.users.create(identity.operator(a.id, SYSTEM_CONTEXT), {
      email: 'Admin@A.test',
      password: PASSWORD,
      roles: ['tenant-admin'],
    });
    adminId = created.user.id;
    const bUser = await identity.users.create(identity.operator(b.id, SYSTEM_CONTEXT), {
      email: 'bob@b.test',
      password: PASSWORD,
      roles: ['tenant-admin'],
    });
    bUserId = bUser.user.id;
    adminToken = await tokenOf('admin@a.test', a);
  });
  afterAll(async () => env?.close());

  it('logs in, shows the session, and lets the user work with its tenant’s data', async () => {
    const me = await as(adminToken, a, { url: '/auth/me' });
    expect(me.statusCode).toBe(200);
    expect(me.json()).toMatchObject({
      user: { email: 'admin@a.test', tenantId: a.id },
      tenant: { slug: a.slug },
    });
    expect(me.json().permissions).toContain('projects:delete');
    const created = await as(adminToken, a, {
      method: 'POST',
      url: '/api/v1/projects',
      payload: { name: 'From a session' },
    });
    expect(created.statusCode).toBe(201);
    // The session cookie works the same way, host-only and HttpOnly.
    const response = await login('admin@a.test', PASSWORD, a);
    const cookie = String(response.headers['set-cookie']);
    expect(cookie).toMatch(/tenantry_session=tns_/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/Secure/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).not.toMatch(/Domain=/i);
    const viaCookie = await env.inject({
      url: '/api/v1/projects',
      headers: { host: hostOf(a), cookie: cookie.split(';')[0]! },
    });
    expect(viaCookie.statusCode).toBe(200);
    expect(viaCookie.json().items.map((item: { name: string }) => item.name)).toContain('From a session');
    // An Authorization header of another scheme (a proxy's Basic credentials) is not a session:
    // the cookie still counts.
    const besideBasic = await env.inject({
      url: '/api/v1/projects',
      headers: { host: hostOf(a), cookie: cookie.split(';')[0]!, authorization: 'Basic dXNlcjpwYXNz' },
    });
    expect(besideBasic.statusCode).toBe(200);
  });

  it('records when a session was last used (written in a batch, on both drivers)', async () => {
    const token = await tokenOf('admin@a.test', a);
    expect((await as(token, a, { method: 'GET', url: '/tenant-info' })).statusCode).toBe(200);
    await env.engine.identity.sessions.flushLastUsed();
    const { rows } = await env.engine.db.owner.query<{ last_used_at: unknown }>(
      'SELECT last_used_at FROM tenantry.sessions WHERE user_id = $1 ORDER BY id DESC LIMIT 1',
      [adminId],
    );
    expect(rows[0]?.last_used_at).not.toBeNull();
  });

  it('answers every failed login the same way, each paying one password hash', async () => {
    const wrongPassword = await login('admin@a.test', 'not the password at all', a, '10.2.0.1');
    const unknown = await login('nobody@a.test', PASSWORD, a, '10.2.0.2');
    const otherTenant = await login('bob@b.test', PASSWORD, a, '10.2.0.3');
    for (const response of [wrongPassword, unknown, otherTenant]) {
      expect(response.statusCode).toBe(401);
      expect(response.json()).toMatchObject({
        code: 'invalid_credentials',
        detail: 'the email or the password is not correct',
      });
      expect(response.headers['set-cookie']).toBeUndefined();
    }
    await env.engine.identity.users.create(env.engine.identity.operator(a.id, SYSTEM_CONTEXT), {
      email: 'timed@a.test',
      password: PASSWORD,
    });
    const slowHashesFor = async (email: string, address: string) => {
      slowHashRuns.length = 0;
      expect((await login(email, 'wrong wrong wrong', undefined, address)).statusCode).toBe(401);
      return slowHashRuns.map((run) => `${run.kind} ${run.cost}`);
    };
    // A missing account pays the same password hash as an existing one (a decoy): without it,
    // it would answer in about a millisecond instead of tens.
    const existing = await slowHashesFor('timed@a.test', '10.3.0.1');
    expect(existing).toEqual([`scrypt ${2 ** 15}`]);
    expect(await slowHashesFor('ghost@a.test', '10.4.0.1')).toEqual(existing);
    expect(await slowHashesFor('bob@b.test', '10.4.0.2')).toEqual(existing);
  });

  it('locks an account after repeated failures, whether or not it exists, without locking others', async () => {
    await env.engine.identity.users.create(env.engine.identity.operator(a.id, SYSTEM_CONTEXT), {
      email: 'lockme@a.test',
      password: PASSWORD,
    });
    for (let i = 0; i < 5; i += 1)
      expect((await login('lockme@a.test', 'bad password!!', a, `10.5.0.${i}`)).statusCode).toBe(401);
    const locked = await login('lockme@a.test', PASSWORD, a, '10.5.1.1');
    expect(locked.statusCode).toBe(429);
    expect(locked.json()).toMatchObject({ code: 'rate_limited' });
    expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
    for (let i = 0; i < 5; i += 1) await login('ghost-lock@a.test', 'bad password!!', a, `10.6.0.${i}`);
    expect((await login('ghost-lock@a.test', PASSWORD, a, '10.6.1.1')).statusCode).toBe(429);
    expect((await login('admin@a.test', PASSWORD, a, '10.5.1.2')).statusCode).toBe(200);
  });

  it('wrong passwords for one account sent at once pay no more password hashes than its allowance', async () => {
    await env.engine.identity.users.create(env.engine.identity.operator(a.id, SYSTEM_CONTEXT), {
      email: 'burst@a.test',
      password: PASSWORD,
    });
    slowHashRuns.length = 0;
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => login('burst@a.test', 'bad password!!', a, `10.7.0.${i}`)),
    );
    const statuses = responses.map((response) => response.statusCode);
    // loginFailuresPerAccount is 5: five checks run, the rest wait without hashing.
    expect(statuses.filter((status) => status === 401)).toHaveLength(5);
    expect(statuses.filter((status) => status === 429)).toHaveLength(15);
    expect(slowHashRuns.filter((run) => run.kind === 'scrypt')).toHaveLength(5);
  });

  it('refuses a session of tenant A on tenant B’s host, and audits it', async () => {
    const response = await as(adminToken, b, { url: '/api/v1/projects' });
    expect(response.statusCode).toBe(403);
    expect(response.json()).toMatchObject({ code: 'cross_tenant' });
    const audit = (await env.admin('GET', '/admin/audit?action=resolve.cross_tenant')).json().entries;
    expect(audit.some((entry: { actor: string }) => entry.actor === `user:${adminId}`)).toBe(true);
    // With A's key and A's session but B's host, still refused.
    const mixed = await as(adminToken, b, { url: '/tenant-info', headers: { 'x-api-key': a.key } });
    expect(mixed.statusCode).toBe(403);
    // /auth/me holds credentials to the same rule: B's host or B's key beside A's session.
    const me = await as(adminToken, b, { url: '/auth/me' });
    expect(me.statusCode).toBe(403);
    expect(me.json()).toMatchObject({ code: 'cross_tenant' });
    const meWithKey = await as(adminToken, a, { url: '/auth/me', headers: { 'x-api-key': b.key } });
    expect(meWithKey.statusCode).toBe(403);
    expect((await as(adminToken, a, { url: '/auth/me' })).statusCode).toBe(200);
    // A Bearer session of A and a session cookie of B: two credentials, two tenants.
    const bToken = await tokenOf('bob@b.test', b);
    const twoSessions = await env.inject({
      url: '/api/v1/projects',
      headers: { authorization: `Bearer ${adminToken}`, cookie: `tenantry_session=${bToken}` },
    });
    expect(twoSessions.statusCode).toBe(403);
    expect(twoSessions.json()).toMatchObject({ code: 'cross_tenant' });
    // An ended cookie beside a valid Bearer session is no claim: the Bearer one is served.
    const staleCookie = await env.inject({
      url: '/api/v1/projects',
      headers: { authorization: `Bearer ${adminToken}`, cookie: 'tenantry_session=tns_ended' },
    });
    expect(staleCookie.statusCode).toBe(200);
  });

  it('never reaches another tenant’s users, roles or groups by id', async () => {
    const bRoles = await env.engine.identity.roles.list(b.id);
    const bAdminRole = bRoles.find((role) => role.name === 'tenant-admin')!;
    const bGroups = await env.engine.identity.groups.list(b.id);
    for (const [method, url, payload] of [
      ['GET', `/api/v1/users/${bUserId}`, undefined],
      ['PATCH', `/api/v1/users/${bUserId}`, { status: 'inactive' }],
      ['DELETE', `/api/v1/users/${bUserId}`, undefined],
      ['POST', `/api/v1/users/${bUserId}/reset-password`, undefined],
      ['GET', `/api/v1/roles/${bAdminRole.id}`, undefined],
      ['PATCH', `/api/v1/groups/${bGroups[0]!.id}`, { name: 'taken-over' }],
    ] as const) {
      const response = await as(adminToken, a, { method, url, ...(payload ? { payload } : {}) });
      expect(response.statusCode, `${method} ${url}`).toBe(404);
    }
    // A role or group of B cannot be given in A, and B's user cannot join A's group.
    expect((await createUser(adminToken, { email: 'x1@a.test', roles: [bAdminRole.id] })).statusCode).toBe(
      404,
    );
    const group = await as(adminToken, a, {
      method: 'POST',
      url: '/api/v1/groups',
      payload: { name: 'crew', members: [bUserId] },
    });
    expect(group.statusCode).toBe(404);
    // Each probe is in A's audit trail, under the user.
    const denied = (await env.admin('GET', `/admin/audit?action=access.denied&tenant=${a.slug}`)).json()
      .entries;
    expect(
      denied.filter((entry: { actor: string }) => entry.actor === `user:${adminId}`).length,
    ).toBeGreaterThanOrEqual(6);
    // Nothing of B changed.
    expect((await env.engine.identity.users.get(b.id, bUserId)).status).toBe('active');
    expect(await env.engine.identity.users.list(a.id)).not.toContainEqual(
      expect.objectContaining({ id: bUserId }),
    );
  });

  describe('safe delegation', () => {
    let managerToken: string;
    let managerId: string;

    beforeAll(async () => {
      const manager = await as(adminToken, a, {
        method: 'POST',
        url: '/api/v1/roles',
        payload: {
          name: 'manager',
          permissions: ['users:manage', 'roles:manage', 'groups:manage', 'projects:read', 'projects:create'],
        },
      });
      expect(manager.statusCode, manager.body).toBe(201);
      const created = await createUser(adminToken, { email: 'manager@a.test', roles: ['manager'] });
      expect(created.statusCode, created.body).toBe(201);
      managerId = created.json().user.id;
      managerToken = await tokenOf('manager@a.test', a);
      const admins = await as(adminToken, a, {
        method: 'POST',
        url: '/api/v1/groups',
        payload: { name: 'admins', roles: ['tenant-admin'] },
      });
      expect(admins.statusCode, admins.body).toBe(201);
    });

    const expectForbidden = (response: { statusCode: number; json(): unknown }, label: string) => {
      expect(response.statusCode, label).toBe(403);
      expect(response.json(), label).toMatchObject({ code: 'forbidden' });
    };

    it('lets a manager create roles only from permissions it holds', async () => {
      const ok = await as(managerToken, a, {
        method: 'POST',
        url: '/api/v1/roles',
        payload: { name: 'viewer', permissions: ['projects:read'] },
      });
      expect(ok.statusCode).toBe(201);
      expectForbidden(
        await as(managerToken, a, {
          method: 'POST',
          url: '/api/v1/roles',
          payload: { name: 'sneaky', permissions: ['projects:read', 'tasks:delete'] },
        }),
        'create a role with a permission not held',
      );
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: '/api/v1/roles/viewer',
          payload: { permissions: ['projects:read', 'audit:read'] },
        }),
        'edit a role to add a permission not held',
      );
      // Its own role cannot be raised either.
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: '/api/v1/roles/manager',
          payload: {
            permissions: [
              'users:manage',
              'roles:manage',
              'groups:manage',
              'projects:read',
              'projects:create',
              'keys:manage',
            ],
          },
        }),
        'raise its own role',
      );
      expect(
        (
          await as(managerToken, a, {
            method: 'PATCH',
            url: '/api/v1/roles/tenant-admin',
            payload: { permissions: [] },
          })
        ).statusCode,
      ).toBe(409);
    });

    it('refuses permissions that are not tenant permissions at all', async () => {
      for (const permission of [
        'admin:tenants',
        'countries:create',
        'sql:execute',
        `${b.id}:projects:read`,
      ]) {
        const response = await as(adminToken, a, {
          method: 'POST',
          url: '/api/v1/roles',
          payload: { name: 'bad-role', permissions: [permission] },
        });
        expect(response.statusCode, permission).toBe(400);
        expect(response.json()).toMatchObject({ code: 'validation_failed', field: 'permissions' });
      }
    });

    it('refuses every assignment that would raise someone, itself included', async () => {
      expectForbidden(
        await createUser(managerToken, { email: 'minion@a.test', roles: ['tenant-admin'] }),
        'create an admin',
      );
      expectForbidden(
        await createUser(managerToken, { email: 'minion@a.test', groups: ['admins'] }),
        'create into the admins group',
      );
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: `/api/v1/users/${managerId}`,
          payload: { roles: ['manager', 'tenant-admin'] },
        }),
        'give itself a role',
      );
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: `/api/v1/users/${managerId}`,
          payload: { groups: ['admins'] },
        }),
        'join the admins group',
      );
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: '/api/v1/groups/admins',
          payload: { members: [managerId] },
        }),
        'add itself to the admins group',
      );
      const crew = await as(managerToken, a, {
        method: 'POST',
        url: '/api/v1/groups',
        payload: { name: 'crew2', members: [managerId] },
      });
      expect(crew.statusCode).toBe(201);
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: '/api/v1/groups/crew2',
          payload: { roles: ['tenant-admin'] },
        }),
        'give its group a role',
      );
      // Taking over a stronger account: a reset token or a new email would hand it over.
      expectForbidden(
        await as(managerToken, a, { method: 'POST', url: `/api/v1/users/${adminId}/reset-password` }),
        'reset the admin’s password',
      );
      expectForbidden(
        await as(managerToken, a, {
          method: 'PATCH',
          url: `/api/v1/users/${adminId}`,
          payload: { email: 'mine@evil.test' },
        }),
        'change the admin’s email',
      );
      const me = await as(managerToken, a, { url: '/auth/me' });
      expect(me.json().permissions).not.toContain('keys:manage');
      expect(me.json().permissions).not.toContain('tasks:read');
      // Restricting is allowed: the manager may take a role away from someone it created.
      const minion = await createUser(managerToken, { email: 'minion2@a.test', roles: ['viewer'] });
      expect(minion.statusCode).toBe(201);
      const restricted = await as(managerToken, a, {
        method: 'PATCH',
        url: `/api/v1/users/${minion.json().user.id}`,
        payload: { roles: [] },
      });
      expect(restricted.statusCode).toBe(200);
    });

    it('never removes the last tenant admin', async () => {
      const self = `/api/v1/users/${adminId}`;
      expect(
        (await as(adminToken, a, { method: 'PATCH', url: self, payload: { roles: [] } })).statusCode,
      ).toBe(409);
      expect(
        (await as(adminToken, a, { method: 'PATCH', url: self, payload: { status: 'inactive' } })).statusCode,
      ).toBe(409);
      expect((await as(adminToken, a, { method: 'DELETE', url: self })).statusCode).toBe(409);
      // With a second admin (through the admins group), the first may step down.
      const second = await createUser(adminToken, { email: 'second@a.test', groups: ['admins'] });
      expect(second.statusCode).toBe(201);
      expect(
        (await as(adminToken, a, { method: 'PATCH', url: self, payload: { roles: ['member'] } })).statusCode,
      ).toBe(200);
      // Now the group is the last path to an admin: deleting it, even by that admin, is refused.
      const secondToken = await tokenOf('second@a.test', a);
      const dropGroup = await as(secondToken, a, { method: 'DELETE', url: '/api/v1/groups/admins' });
      expect(dropGroup.statusCode, dropGroup.body).toBe(409);
      const restored = await as(secondToken, a, {
        method: 'PATCH',
        url: self,
        payload: { roles: ['tenant-admin'] },
      });
      expect(restored.statusCode, restored.body).toBe(200);
    });
  });

  describe('API keys with scopes', () => {
    const withKey = (key: string, options: InjectOptions) =>
      env.inject({ ...options, headers: { 'x-api-key': key, ...(options.headers ?? {}) } });

    it('holds only its permissions, and refuses unknown ones', async () => {
      const created = await as(adminToken, a, {
        method: 'POST',
        url: '/api/v1/keys',
        payload: { name: 'reporting', permissions: ['projects:read'] },
      });
      expect(created.statusCode, created.body).toBe(201);
      const key = created.json().key as string;
      expect((await withKey(key, { url: '/api/v1/projects' })).statusCode).toBe(200);
      expect(
        (await withKey(key, { method: 'POST', url: '/api/v1/projects', payload: { name: 'k' } })).statusCode,
      ).toBe(403);
      expect((await withKey(key, { url: '/api/v1/tasks' })).statusCode).toBe(403);
      expect((await withKey(key, { url: '/api/v1/users' })).statusCode).toBe(403);
      const bad = await as(adminToken, a, {
        method: 'POST',
        url: '/api/v1/keys',
        payload: { permissions: ['admin:tenants'] },
      });
      expect(bad.statusCode).toBe(400);
      const byOperator = await env.admin('POST', `/admin/tenants/${a.slug}/api-keys`, {
        permissions: ['sql:raw'],
      });
      expect(byOperator.statusCode).toBe(400);
      const listed = (await as(adminToken, a, { url: '/api/v1/keys' })).json().items;
      expect(listed.find((item: { name: string }) => item.name === 'reporting')).toMatchObject({
        permissions: ['projects:read'],
        createdBy: adminId,
      });
      expect(JSON.stringify(listed)).not.toContain(key);
    });

    it('never holds more than its maker, then or later', async () => {
      const role = await as(adminToken, a, {
        method: 'POST',
        url: '/api/v1/roles',
        payload: { name: 'keysmith', permissions: ['keys:manage', 'projects:read', 'tasks:read'] },
      });
      expect(role.statusCode, role.body).toBe(201);
      const smith = await createUser(adminToken, { email: 'smith@a.test', roles: ['keysmith'] });
      const smithToken = await tokenOf('smith@a.test', a);
      const raise = await as(smithToken, a, {
        method: 'POST',
        url: '/api/v1/keys',
        payload: { permissions: ['projects:create'] },
      });
      expect(raise.statusCode).toBe(403);
      expect(raise.json()).toMatchObject({ code: 'forbidden' });
      const plain = await as(smithToken, a, {
        method: 'POST',
        url: '/api/v1/keys',
        payload: { name: 'mine' },
      });
      expect(plain.statusCode, plain.body).toBe(201);
      expect(plain.json().permissions).toEqual(['keys:manage', 'projects:read', 'tasks:read']);
      const key = plain.json().key as string;
      expect((await withKey(key, { url: '/api/v1/tasks' })).statusCode).toBe(200);
      // The maker loses tasks:read: so does the key, at once.
      expect(
        (
          await as(adminToken, a, {
            method: 'PATCH',
            url: '/api/v1/roles/keysmith',
            payload: { permissions: ['keys:manage', 'projects:read'] },
          })
        ).statusCode,
      ).toBe(200);
      expect((await withKey(key, { url: '/api/v1/tasks' })).statusCode).toBe(403);
      expect((await withKey(key, { url: '/api/v1/projects' })).statusCode).toBe(200);
      // A key cannot make a stronger key either.
      const viaKey = await withKey(key, {
        method: 'POST',
        url: '/api/v1/keys',
        payload: { permissions: ['tasks:read'] },
      });
      expect(viaKey.statusCode).toBe(403);
      // The maker deactivated: the key holds nothing.
      await as(adminToken, a, {
        method: 'PATCH',
        url: `/api/v1/users/${smith.json().user.id}`,
        payload: { status: 'inactive' },
      });
      expect((await withKey(key, { url: '/api/v1/projects' })).statusCode).toBe(403);
      // Without keys:manage, no key at all.
      const reader = await createUser(adminToken, { email: 'nokeys@a.test', roles: ['read-only'] });
      expect(reader.statusCode).toBe(201);
      const readerToken = await tokenOf('nokeys@a.test', a);
      expect(
        (await as(readerToken, a, { method: 'POST', url: '/api/v1/keys', payload: {} })).statusCode,
      ).toBe(403);
    });

    it('a key made by a key belongs to the same user, and a deleted user takes its keys along', async () => {
      const role = await as(adminToken, a, {
        method: 'POST',
        url: '/api/v1/roles',
        payload: { name: 'keychain', permissions: ['keys:manage', 'projects:read'] },
      });
      expect(role.statusCode, role.body).toBe(201);
      const maker = await createUser(adminToken, { email: 'chain@a.test', roles: ['keychain'] });
      const makerToken = await tokenOf('chain@a.test', a);
      const first = (await as(makerToken, a, { method: 'POST', url: '/api/v1/keys', payload: {} })).json()
        .key as string;
      const second = await withKey(first, { method: 'POST', url: '/api/v1/keys', payload: {} });
      expect(second.statusCode, second.body).toBe(201);
      const secondKey = second.json().key as string;
      expect((await withKey(secondKey, { url: '/api/v1/projects' })).statusCode).toBe(200);
      // The maker deactivated: the key its key made holds nothing either.
      const userUrl = `/api/v1/users/${maker.json().user.id}`;
      await as(adminToken, a, { method: 'PATCH', url: userUrl, payload: { status: 'inactive' } });
      expect((await withKey(secondKey, { url: '/api/v1/projects' })).statusCode).toBe(403);
      // Deleted (not only inactive): its keys are revoked, not set free of their maker.
      expect((await as(adminToken, a, { method: 'DELETE', url: userUrl })).statusCode).toBe(204);
      for (const key of [first, secondKey])
        expect((await withKey(key, { url: '/api/v1/projects' })).statusCode).toBe(401);
    });
  });

  it('a narrow key that may manage keys revokes only keys that hold no more than it does', async () => {
    const role = await as(adminToken, a, {
      method: 'POST',
      url: '/api/v1/roles',
      payload: { name: 'key-janitor', permissions: ['keys:manage', 'projects:read'] },
    });
    expect(role.statusCode, role.body).toBe(201);
    await createUser(adminToken, { email: 'janitor@a.test', roles: ['key-janitor'] });
    const janitor = await tokenOf('janitor@a.test', a);
    const keyIdOf = (key: string) => key.split('_')[1]!;
    // The tenant's own key (every permission) is out of its reach.
    const operatorKey = await as(janitor, a, { method: 'DELETE', url: `/api/v1/keys/${keyIdOf(a.key)}` });
    expect(operatorKey.statusCode).toBe(403);
    expect((await env.inject({ url: '/tenant-info', headers: { 'x-api-key': a.key } })).statusCode).toBe(200);
    // A key no broader than itself is not.
    const own = (
      await as(janitor, a, {
        method: 'POST',
        url: '/api/v1/keys',
        payload: { permissions: ['projects:read'] },
      })
    ).json().key as string;
    const revoked = await as(janitor, a, { method: 'DELETE', url: `/api/v1/keys/${keyIdOf(own)}` });
    expect(revoked.statusCode, revoked.body).toBe(200);
  });

  it('managing a user needs all it holds, whether it is active or not (no takeover through deactivation)', async () => {
    const role = await as(adminToken, a, {
      method: 'POST',
      url: '/api/v1/roles',
      payload: { name: 'user-clerk', permissions: ['users:manage'] },
    });
    expect(role.statusCode, role.body).toBe(201);
    await createUser(adminToken, { email: 'clerk@a.test', roles: ['user-clerk'] });
    const clerk = await tokenOf('clerk@a.test', a);
    const boss = await createUser(adminToken, { email: 'boss2@a.test', roles: ['tenant-admin'] });
    const bossUrl = `/api/v1/users/${boss.json().user.id}`;
    const clerkDoes = (method: 'PATCH' | 'POST' | 'DELETE', url: string, payload?: object) =>
      as(clerk, a, { method, url, ...(payload ? { payload } : {}) });
    expect((await clerkDoes('PATCH', bossUrl, { status: 'inactive' })).statusCode).toBe(403);
    expect((await clerkDoes('PATCH', bossUrl, { roles: [] })).statusCode).toBe(403);
    expect((await clerkDoes('DELETE', bossUrl)).statusCode).toBe(403);
    // Deactivated by an admin, the boss still holds its roles: the clerk still may not touch it.
    await as(adminToken, a, { method: 'PATCH', url: bossUrl, payload: { status: 'inactive' } });
    expect((await clerkDoes('POST', `${bossUrl}/reset-password`)).statusCode).toBe(403);
    expect((await clerkDoes('PATCH', bossUrl, { status: 'active' })).statusCode).toBe(403);
    const after = (await as(adminToken, a, { url: bossUrl })).json();
    expect(after.status).toBe('inactive');
  });

  it('a NUL character in a login or a reference is a 400, never a 500', async () => {
    const nulLogin = await env.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { host: hostOf(a) },
      payload: { email: 'a\u0000@a.test', password: PASSWORD },
    });
    expect(nulLogin.statusCode, nulLogin.body).toBeLessThan(500);
    expect([400, 401]).toContain(nulLogin.statusCode);
    const nulRole = await as(adminToken, a, { url: '/api/v1/roles/%00' });
    expect(nulRole.statusCode, nulRole.body).toBeLessThan(500);
  });

  it('one spelling per login name: Unicode NFC, no invisible or control characters', async () => {
    const precomposed = await createUser(adminToken, { email: 'Jos\u00e9@a.test' });
    expect(precomposed.statusCode, precomposed.body).toBe(201);
    expect(precomposed.json().user.email).toBe('jos\u00e9@a.test');
    // "e" and a combining accent is the same name: taken, and it logs in to the same account.
    const decomposed = await createUser(adminToken, { email: 'jose\u0301@a.test' });
    expect(decomposed.statusCode, decomposed.body).toBe(409);
    const loggedIn = await login('JOSE\u0301@a.test', PASSWORD, a);
    expect(loggedIn.statusCode, loggedIn.body).toBe(200);
    expect(loggedIn.json().user.id).toBe(precomposed.json().user.id);
    for (const email of [
      'admin\u200b@a.test',
      'ad\u202emin@a.test',
      'ad\u0001min@a.test',
      'ad\u2028min@a.test',
    ]) {
      const refused = await createUser(adminToken, { email });
      expect(refused.statusCode, email).toBe(400);
      expect(refused.json()).toMatchObject({ code: 'validation_failed', field: 'email' });
    }
  });

  it('refuses users beyond maxUsers, even when two are created at once', async () => {
    const q = await env.createTenant('idn-quota', { config: { limits: { maxUsers: 2 } } });
    const identity = env.engine.identity;
    await identity.users.create(identity.operator(q.id, SYSTEM_CONTEXT), {
      email: 'boss@quota.test',
      password: PASSWORD,
      roles: ['tenant-admin'],
    });
    const boss = await tokenOf('boss@quota.test', q);
    const results = await Promise.all(
      ['one@quota.test', 'two@quota.test'].map((email) =>
        as(boss, q, { method: 'POST', url: '/api/v1/users', payload: { email, password: PASSWORD } }),
      ),
    );
    expect(results.map((response) => response.statusCode).sort()).toEqual([201, 403]);
    const refused = results.find((response) => response.statusCode === 403)!;
    expect(refused.json()).toMatchObject({ code: 'quota_exceeded', field: 'limits.maxUsers' });
    expect(await identity.users.list(q.id)).toHaveLength(2);
    const usage = (await env.admin('GET', `/admin/tenants/${q.slug}/usage`)).json();
    expect(usage).toMatchObject({ users: { total: 2 }, limits: { maxUsers: 2 } });
  });

  it('enforces entity permissions: a read-only user reads but cannot write', async () => {
    const created = await createUser(adminToken, { email: 'reader@a.test', roles: ['read-only'] });
    expect(created.statusCode).toBe(201);
    const token = await tokenOf('reader@a.test', a);
    expect((await as(token, a, { url: '/api/v1/projects' })).statusCode).toBe(200);
    const write = await as(token, a, { method: 'POST', url: '/api/v1/projects', payload: { name: 'nope' } });
    expect(write.statusCode).toBe(403);
    expect(write.json()).toMatchObject({ code: 'forbidden' });
    expect((await as(token, a, { url: '/api/v1/users' })).statusCode).toBe(403);
    // Shared data stays readable, never writable.
    expect((await as(token, a, { url: '/api/v1/countries' })).statusCode).toBe(200);
  });

  it('ends sessions at once when the user or the tenant is deactivated', async () => {
    const created = await createUser(adminToken, { email: 'leaver@a.test' });
    const token = await tokenOf('leaver@a.test', a);
    expect((await as(token, a, { url: '/api/v1/projects' })).statusCode).toBe(200);
    const deactivated = await as(adminToken, a, {
      method: 'PATCH',
      url: `/api/v1/users/${created.json().user.id}`,
      payload: { status: 'inactive' },
    });
    expect(deactivated.statusCode).toBe(200);
    expect((await as(token, a, { url: '/api/v1/projects' })).statusCode).toBe(401);
    expect((await login('leaver@a.test', PASSWORD, a)).statusCode).toBe(401);

    const c = await env.createTenant('idn-c');
    await env.engine.identity.users.create(env.engine.identity.operator(c.id, SYSTEM_CONTEXT), {
      email: 'carol@c.test',
      password: PASSWORD,
      roles: ['tenant-admin'],
    });
    const carol = await tokenOf('carol@c.test', c);
    expect((await as(carol, c, { url: '/api/v1/projects' })).statusCode).toBe(200);
    expect((await env.admin('POST', `/admin/tenants/${c.slug}/deactivate`)).statusCode).toBe(200);
    expect(
      (await env.inject({ url: '/api/v1/projects', headers: { authorization: `Bearer ${carol}` } }))
        .statusCode,
    ).toBe(401);
    expect((await env.admin('POST', `/admin/tenants/${c.slug}/activate`)).statusCode).toBe(200);
    // Reactivating the tenant does not bring the ended session back.
    expect(
      (await env.inject({ url: '/api/v1/projects', headers: { authorization: `Bearer ${carol}` } }))
        .statusCode,
    ).toBe(401);
  });

  it('logs out: the token stops working', async () => {
    const token = await tokenOf('admin@a.test', a);
    expect((await as(token, a, { method: 'POST', url: '/auth/logout' })).statusCode).toBe(204);
    expect((await as(token, a, { url: '/auth/me' })).statusCode).toBe(401);
    expect((await as(token, a, { url: '/api/v1/projects' })).statusCode).toBe(401);
  });

  it('sets a first password with a one-time set-up token', async () => {
    const created = await as(adminToken, a, {
      method: 'POST',
      url: '/api/v1/users',
      payload: { email: 'newbie@a.test' },
    });
    expect(created.statusCode).toBe(201);
    const { setupToken, warning } = created.json();
    expect(setupToken).toMatch(/^tnu_/);
    expect(warning).toMatch(/only once/);
    expect((await login('newbie@a.test', PASSWORD, a)).statusCode).toBe(401);
    const short = await env.inject({
      method: 'POST',
      url: '/auth/setup',
      payload: { token: setupToken, password: 'short' },
    });
    expect(short.statusCode).toBe(400);
    expect(
      (
        await env.inject({
          method: 'POST',
          url: '/auth/setup',
          payload: { token: setupToken, password: PASSWORD },
        })
      ).statusCode,
    ).toBe(204);
    expect((await login('newbie@a.test', PASSWORD, a)).statusCode).toBe(200);
    expect(
      (
        await env.inject({
          method: 'POST',
          url: '/auth/setup',
          payload: { token: setupToken, password: PASSWORD },
        })
      ).statusCode,
    ).toBe(401);
    // The hash, never the password or the token, is stored.
    const { rows } = await env.engine.db.owner.query<{
      password_hash: string;
      setup_token_hash: Buffer | null;
    }>("SELECT password_hash, setup_token_hash FROM tenantry.users WHERE email = 'newbie@a.test'");
    expect(rows[0]?.password_hash).toMatch(/^scrypt\$/);
    expect(rows[0]?.password_hash).not.toContain(PASSWORD);
    expect(rows[0]?.setup_token_hash).toBeNull();
  });

  it('gives a user without a tenant who is no global admin nothing: no tenant data, no admin routes', async () => {
    const { hashPassword } = await import('../../src/auth/password.js');
    await env.engine.db.owner.query(
      `INSERT INTO tenantry.users (id, tenant_id, email, status, global_admin, password_hash)
       VALUES (gen_random_uuid(), NULL, 'drifter@nowhere.test', 'active', false, $1)`,
      [await hashPassword(PASSWORD)],
    );
    const response = await login('drifter@nowhere.test', PASSWORD);
    expect(response.statusCode).toBe(200);
    const token = response.json().token as string;
    for (const url of [
      '/api/v1/projects',
      '/api/v1/users',
      '/api/v1/roles',
      '/api/v1/clients',
      '/tenant-info',
    ]) {
      const refused = await env.inject({ url, headers: { authorization: `Bearer ${token}` } });
      expect(refused.statusCode, url).toBe(403);
      expect(JSON.stringify(refused.json())).not.toContain('items');
    }
    expect((await as(token, a, { url: '/api/v1/projects' })).statusCode).toBe(403);
    expect(
      (await env.inject({ url: '/admin/tenants', headers: { authorization: `Bearer ${token}` } })).statusCode,
    ).toBe(403);
    const me = await env.inject({ url: '/auth/me', headers: { authorization: `Bearer ${token}` } });
    expect(me.json()).toMatchObject({ tenant: null, permissions: [] });
  });

  it('opens the admin routes to global admins only, and never to tenant users', async () => {
    await env.engine.identity.users.createGlobalAdmin(SYSTEM_CONTEXT, {
      email: 'root@ops.test',
      password: PASSWORD,
    });
    const response = await login('root@ops.test', PASSWORD);
    expect(response.statusCode).toBe(200);
    const token = response.json().token as string;
    expect(response.json().user).toMatchObject({ tenantId: null, globalAdmin: true });
    const tenants = await env.inject({
      url: '/admin/tenants',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(tenants.statusCode).toBe(200);
    const tenantUser = await env.inject({
      url: '/admin/tenants',
      headers: { authorization: `Bearer ${adminToken}` },
    });
    expect(tenantUser.statusCode).toBe(403);
    // A global admin has no tenant routes.
    expect((await as(token, a, { url: '/api/v1/projects' })).statusCode).toBe(403);
    // A global admin cannot log in through a tenant's host.
    expect((await login('root@ops.test', PASSWORD, a)).statusCode).toBe(401);
  });
});
