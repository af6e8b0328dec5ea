import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { startTestEnv, type TestEnv } from '../helpers/harness.js';

/** Routes anyone may call: health, the login and set-up pages, a machine's first connection. */
const PUBLIC = new Set([
  'GET /healthz',
  'GET /readyz',
  'POST /auth/login',
  'POST /auth/setup',
  'POST /clients/connect',
]);

interface OperationObject {
  security?: Record<string, string[]>[];
  parameters?: { name: string; in: string }[];
  requestBody?: { content: { 'application/json': { schema: Record<string, unknown> } } };
}

describe('the OpenAPI document', () => {
  let env: TestEnv;
  let paths: Record<string, Record<string, OperationObject>>;
  let schemes: Record<string, unknown>;

  beforeAll(async () => {
    env = await startTestEnv('pglite', { entities: EXAMPLE_ENTITIES });
    const document = (await env.inject({ url: '/openapi.json' })).json();
    paths = document.paths;
    schemes = document.components.securitySchemes;
  });
  afterAll(async () => {
    await env?.close();
  });

  const routes = () =>
    Object.entries(paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, operation]) => ({
        route: `${method.toUpperCase()} ${path}`,
        operation,
      })),
    );

  it('declares the security of every route: none only on the public ones', () => {
    const undeclared = routes().filter(({ operation }) => operation.security === undefined);
    expect(undeclared.map(({ route }) => route)).toEqual([]);
    const open = routes()
      .filter(({ operation }) => operation.security!.length === 0)
      .map(({ route }) => route);
    expect(open.sort()).toEqual([...PUBLIC].sort());
    // Every requirement names a scheme the document defines.
    for (const { route, operation } of routes()) {
      for (const requirement of operation.security!) {
        for (const scheme of Object.keys(requirement))
          expect(schemes, `${route}: ${scheme}`).toHaveProperty(scheme);
      }
    }
  });

  it('admin routes take the admin token or a global admin’s session; tenant routes a key or a user’s session', () => {
    for (const { route, operation } of routes()) {
      const names = operation.security!.flatMap((requirement) => Object.keys(requirement));
      if (route.includes(' /admin/')) expect(names, route).toEqual(['adminToken', 'sessionBearer']);
      if (route.includes(' /api/v1/'))
        expect(names, route).toEqual(['apiKey', 'sessionBearer', 'sessionCookie']);
    }
  });

  it('declares the query parameters of list routes', () => {
    const names = (path: string) =>
      (paths[path]!.get!.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
    expect(names('/admin/tenants')).toEqual(
      expect.arrayContaining(['includeInactive', 'includeDeleted', 'limit', 'after']),
    );
    expect(names('/admin/audit')).toEqual(
      expect.arrayContaining(['tenant', 'action', 'since', 'until', 'before', 'limit']),
    );
    expect(names('/api/v1/tasks')).toEqual(
      expect.arrayContaining(['title', 'done', 'sort', 'limit', 'next', 'q']),
    );
  });

  it('types the rows of a batch body', () => {
    const body = paths['/api/v1/tasks/batch']!.post!.requestBody!.content['application/json'].schema;
    const rows = (body.properties as { rows: { items: { properties: Record<string, unknown> } } }).rows;
    expect(Object.keys(rows.items.properties)).toEqual(expect.arrayContaining(['title', 'project', 'done']));
  });

  it('the docs page shows Tenantry, not the Fastify logo', async () => {
    const page = await env.inject({ url: '/docs' });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<title>Tenantry API</title>');
    const initializer = (await env.inject({ url: '/docs/static/swagger-initializer.js' })).body;
    const logo = /img\.src = 'data:image\/svg\+xml;base64,([^']+)'/.exec(initializer)?.[1];
    expect(Buffer.from(logo ?? '', 'base64').toString()).toContain('>Tenantry</text>');
  });
});
