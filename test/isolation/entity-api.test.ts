import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const LEVELS: Record<string, IsolationLevel[]> = {
  pglite: ['row', 'schema'],
  postgres: ['row', 'schema', 'database'],
};

describe.each(DRIVERS.flatMap((driver) => LEVELS[driver]!.map((level) => [driver, level] as const)))(
  'entity REST API on %s, %s isolation',
  (driver, isolation) => {
    let env: TestEnv;
    let a: { id: string; key: string };
    let b: { id: string; key: string };
    const as = (tenant: { key: string }) => ({ 'x-api-key': tenant.key });

    beforeAll(async () => {
      env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES });
      a = await env.createTenant('tenant-a', { isolation });
      b = await env.createTenant('tenant-b', { isolation });
    });
    afterAll(async () => {
      await env?.close();
    });

    it('creates, reads, lists, updates and deletes rows of the tenant', async () => {
      const created = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: as(a),
        payload: { name: 'Apollo' },
      });
      expect(created.statusCode, created.body).toBe(201);
      const project = created.json();
      expect(project).toMatchObject({ name: 'Apollo', status: 'active' });
      expect(project).not.toHaveProperty('tenant_id');

      const task = await env.inject({
        method: 'POST',
        url: '/api/v1/tasks',
        headers: as(a),
        payload: {
          project: project.id,
          title: 'Launch the rocket',
          due: '2026-12-01',
          estimate: 2.5,
          meta: { tags: ['x'] },
        },
      });
      expect(task.statusCode, task.body).toBe(201);
      expect(task.json()).toMatchObject({
        done: false,
        due: '2026-12-01',
        estimate: 2.5,
        meta: { tags: ['x'] },
      });

      const got = await env.inject({ url: `/api/v1/projects/${project.id}`, headers: as(a) });
      expect(got.json()).toEqual(project);

      const list = await env.inject({ url: '/api/v1/tasks?q=rocket', headers: as(a) });
      expect(list.json().items).toHaveLength(1);

      const patched = await env.inject({
        method: 'PATCH',
        url: `/api/v1/tasks/${task.json().id}`,
        headers: as(a),
        payload: { done: true },
      });
      expect(patched.json().done).toBe(true);

      const deleted = await env.inject({
        method: 'DELETE',
        url: `/api/v1/projects/${project.id}`,
        headers: as(a),
      });
      expect(deleted.statusCode).toBe(204);
      // onDelete: cascade
      expect((await env.inject({ url: '/api/v1/tasks', headers: as(a) })).json().items).toHaveLength(0);
    });

    it('needs credentials: the tenant host alone reads and writes nothing', async () => {
      const read = await env.inject({ url: '/api/v1/projects', headers: { host: 'tenant-a.localhost' } });
      expect(read.statusCode).toBe(401);
      expect(read.json().code).toBe('unauthenticated');
      const write = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: { host: 'tenant-a.localhost' },
        payload: { name: 'Anonymous' },
      });
      expect(write.statusCode).toBe(401);
      const list = await env.inject({ url: '/api/v1/projects?name=Anonymous', headers: as(a) });
      expect(list.json().items).toEqual([]);
      // Public tenant information stays reachable by host.
      expect(
        (await env.inject({ url: '/tenant-info', headers: { host: 'tenant-a.localhost' } })).statusCode,
      ).toBe(200);
    });

    it('never shows, changes or deletes another tenant’s rows', async () => {
      const mine = (
        await env.inject({
          method: 'POST',
          url: '/api/v1/projects',
          headers: as(a),
          payload: { name: 'Secret' },
        })
      ).json();
      const theirs = await env.inject({ url: `/api/v1/projects/${mine.id}`, headers: as(b) });
      expect(theirs.statusCode).toBe(404);
      const missing = await env.inject({
        url: '/api/v1/projects/0190f5c2-6f3d-7a2b-8c4d-0123456789ab',
        headers: as(b),
      });
      expect(theirs.json().detail).toBe(missing.json().detail);
      expect((await env.inject({ url: '/api/v1/projects', headers: as(b) })).json().items).toEqual([]);
      expect(
        (await env.inject({ url: '/api/v1/projects?name=Secret', headers: as(b) })).json().items,
      ).toEqual([]);
      const patch = await env.inject({
        method: 'PATCH',
        url: `/api/v1/projects/${mine.id}`,
        headers: as(b),
        payload: { name: 'x' },
      });
      expect(patch.statusCode).toBe(404);
      const del = await env.inject({ method: 'DELETE', url: `/api/v1/projects/${mine.id}`, headers: as(b) });
      expect(del.statusCode).toBe(404);
      // A reference into another tenant is refused like a reference to nothing.
      const ref = await env.inject({
        method: 'POST',
        url: '/api/v1/tasks',
        headers: as(b),
        payload: { project: mine.id, title: 'Steal' },
      });
      expect(ref.statusCode).toBe(400);
      expect(ref.json().field).toBe('project');
      expect((await env.inject({ url: `/api/v1/projects/${mine.id}`, headers: as(a) })).json().name).toBe(
        'Secret',
      );
    });

    it('refuses a tenant_id in the body, and answers a duplicate with 409 naming the field', async () => {
      const forged = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: as(a),
        payload: { name: 'Forged', tenant_id: b.id },
      });
      expect(forged.statusCode).toBe(400);
      await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: as(a),
        payload: { name: 'Twin' },
      });
      const twin = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: as(a),
        payload: { name: 'Twin' },
      });
      expect(twin.statusCode).toBe(409);
      expect(twin.json()).toMatchObject({ code: 'conflict', field: 'name' });
      expect(twin.body).not.toContain('Twin');
      // Unique per tenant: the other tenant may use the same name.
      const other = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: as(b),
        payload: { name: 'Twin' },
      });
      expect(other.statusCode).toBe(201);
    });

    it('answers values PostgreSQL would refuse with 400 naming the field, never 500, and writes nothing', async () => {
      const project = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: as(a),
        payload: { name: 'Refusals' },
      });
      const projectId = project.json().id;
      const count = async () =>
        (await env.inject({ url: `/api/v1/tasks?project=${projectId}`, headers: as(a) })).json().items.length;
      const before = await count();
      const reads: [string, string][] = [
        ['due=2024-02-31', 'due'],
        ['due=0000-01-01', 'due'],
        ['due[gte]=2024-13-01', 'due[gte]'],
        ['created_at[gte]=0000-01-01T00:00:00Z', 'created_at[gte]'],
        ['created_at[lte]=2024-01-01T00:00:00%2B16:00', 'created_at[lte]'],
        ['title=a%00b', 'title'],
        ['title[like]=%00', 'title[like]'],
        ['title[in]=a,b%00', 'title[in]'],
        ['q=a%00b', 'q'],
        ['__proto__=x', '__proto__'],
      ];
      for (const [query, field] of reads) {
        const response = await env.inject({ url: `/api/v1/tasks?${query}`, headers: as(a) });
        expect(response.statusCode, `${query}: ${response.body}`).toBe(400);
        expect(response.json(), query).toMatchObject({ code: 'validation_failed', field });
      }
      const writes: [Record<string, unknown>, string | undefined][] = [
        [{ title: 'a\u0000b' }, 'title'],
        [{ title: 'ok', meta: { note: 'a\u0000b' } }, undefined],
        [{ title: 'ok', due: '2024-02-31' }, undefined],
      ];
      for (const [fields, field] of writes) {
        const payload = { project: projectId, ...fields };
        for (const [method, url, body] of [
          ['POST', '/api/v1/tasks', payload],
          ['POST', '/api/v1/tasks/batch', { rows: [{ project: projectId, title: 'fine' }, payload] }],
        ] as const) {
          const response = await env.inject({ method, url, headers: as(a), payload: body });
          expect(response.statusCode, `${url} ${JSON.stringify(fields)}: ${response.body}`).toBe(400);
          expect(response.json().code).toBe('validation_failed');
          if (field && url === '/api/v1/tasks') expect(response.json().field).toBe(field);
        }
      }
      expect(await count()).toBe(before);
      // The admin list of a shared entity takes its parameters the same way.
      for (const query of ['name[in]=a&name[in]=b', 'name=a&name=b']) {
        const response = await env.admin('GET', `/admin/shared/countries?${query}`);
        expect(response.statusCode, `${query}: ${response.body}`).toBe(400);
      }
    });

    it('pages with a cursor, sorts and filters', async () => {
      const batch = await env.inject({
        method: 'POST',
        url: '/api/v1/projects/batch',
        headers: as(b),
        payload: {
          rows: Array.from({ length: 25 }, (_, i) => ({
            name: `p-${String(i).padStart(2, '0')}`,
            status: i % 2 ? 'archived' : 'active',
          })),
        },
      });
      expect(batch.statusCode, batch.body).toBe(201);
      const seen: string[] = [];
      let next: string | null = null;
      do {
        const page = (
          await env.inject({
            url: `/api/v1/projects?sort=-name&limit=7&name[like]=p-*${next ? `&next=${next}` : ''}`,
            headers: as(b),
          })
        ).json() as { items: { name: string }[]; next: string | null };
        seen.push(...page.items.map((item) => item.name));
        next = page.next;
      } while (next);
      expect(seen).toHaveLength(25);
      expect(seen).toEqual([...seen].sort().reverse());
      const archived = (
        await env.inject({ url: '/api/v1/projects?status=archived&limit=100', headers: as(b) })
      ).json();
      expect(archived.items).toHaveLength(12);
      const bad = await env.inject({ url: '/api/v1/projects?colour=red', headers: as(b) });
      expect(bad.statusCode).toBe(400);
    });

    it('documents every entity route in the OpenAPI document', async () => {
      const openapi = (await env.inject({ url: '/openapi.json' })).json();
      expect(Object.keys(openapi.paths)).toEqual(
        expect.arrayContaining([
          '/api/v1/projects',
          '/api/v1/projects/{id}',
          '/api/v1/tasks/batch',
          '/admin/shared/countries',
        ]),
      );
      const create = openapi.paths['/api/v1/tasks'].post.requestBody.content['application/json'].schema;
      expect(create.required).toEqual(expect.arrayContaining(['project', 'title']));
      expect(JSON.stringify(openapi)).not.toContain('tenant_id');
    });

    it('lets global admins write shared entities and tenants only read them', async () => {
      const created = await env.admin('POST', '/admin/shared/countries', { code: 'FR', name: 'France' });
      expect(created.statusCode, created.body).toBe(201);
      const id = created.json().id;
      for (const tenant of [a, b]) {
        const list = await env.inject({ url: '/api/v1/countries?code=FR', headers: as(tenant) });
        expect(list.json().items).toEqual([expect.objectContaining({ id, code: 'FR', name: 'France' })]);
      }
      const write = await env.inject({
        method: 'POST',
        url: '/api/v1/countries',
        headers: as(a),
        payload: { code: 'XX' },
      });
      expect(write.statusCode).toBe(403);
      const patch = await env.inject({
        method: 'PATCH',
        url: `/api/v1/countries/${id}`,
        headers: as(a),
        payload: { name: 'x' },
      });
      expect(patch.statusCode).toBe(403);
      const viaAdminWithKey = await env.inject({
        method: 'POST',
        url: '/admin/shared/countries',
        headers: as(a),
        payload: { code: 'YY' },
      });
      expect(viaAdminWithKey.statusCode).toBe(401);
      const renamed = await env.admin('PATCH', `/admin/shared/countries/${id}`, {
        name: 'République française',
      });
      expect(renamed.statusCode).toBe(200);
      expect((await env.admin('DELETE', `/admin/shared/countries/${id}`)).statusCode).toBe(204);
      expect((await env.inject({ url: `/api/v1/countries/${id}`, headers: as(a) })).statusCode).toBe(404);
      const audit = (await env.admin('GET', '/admin/audit?action=shared')).json().entries;
      expect(audit.map((e: { action: string }) => e.action)).toEqual(
        expect.arrayContaining([
          'shared.countries.create',
          'shared.countries.update',
          'shared.countries.delete',
        ]),
      );
    });

    it('applies the tenant statement timeout (enforced on PostgreSQL; PGlite cannot interrupt a statement)', async () => {
      await env.admin('PATCH', '/admin/tenants/tenant-a', {
        config: { limits: { statementTimeoutMs: 150 } },
      });
      const setting = await env.tenantry.withTenant(a.id, (db) =>
        db.query<{ timeout: string }>("SELECT current_setting('statement_timeout') AS timeout"),
      );
      expect(setting.rows[0]!.timeout).toBe('150ms');
      const other = await env.tenantry.withTenant(b.id, (db) =>
        db.query<{ timeout: string }>("SELECT current_setting('statement_timeout') AS timeout"),
      );
      expect(other.rows[0]!.timeout).toBe('5s');
      if (driver === 'postgres') {
        await expect(
          env.tenantry.withTenant(a.id, (db) => db.query('SELECT pg_sleep(2)')),
        ).rejects.toMatchObject({
          code: '57014',
        });
      }
      await env.admin('PATCH', '/admin/tenants/tenant-a', { config: {} });
    });
  },
);
