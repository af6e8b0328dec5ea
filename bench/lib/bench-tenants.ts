import { randomBytes } from 'node:crypto';

/** The admin token the benchmarks' servers are started with (TENANTRY_ADMIN_TOKEN). */
export const BENCH_ADMIN_TOKEN = `bench-admin-${randomBytes(16).toString('hex')}`;

/** The entity the entity, identity and allocation benchmarks read and write. */
export const PROJECTS_ENTITIES_YAML = `
entities:
  projects:
    scope: tenant
    fields:
      name: { type: text, required: true, unique: true }
      status: { type: enum, values: [active, archived], default: active }
`;

/** POSTs `body` to an admin route with the benchmark's admin token; the JSON answer, or throws. */
export async function adminPost(url: string, path: string, body: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${BENCH_ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return (await response.json()) as Record<string, unknown>;
}
