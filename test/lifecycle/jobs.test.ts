import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { extract as createExtract } from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyArchive } from '../../src/lifecycle/archive/archive-reader.js';
import { exportPruning } from '../../src/lifecycle/export-retention.js';
import { restoreTenant } from '../../src/lifecycle/tenant-restore.js';
import { EXAMPLE_ENTITIES } from '../helpers/entities.js';
import { eventually } from '../helpers/eventually.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

interface JobJson {
  id: string;
  status: string;
  download: string | null;
  progress: { done: number; total?: number; unit: string } | null;
  result: Record<string, unknown> | null;
  error: { code: string } | null;
}

/** The entries of a tar.gz, by name. */
async function entries(body: Buffer): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const extract = createExtract();
  Readable.from([body]).pipe(createGunzip()).pipe(extract);
  for await (const entry of extract) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    found.set(entry.header.name, Buffer.concat(chunks).toString());
  }
  return found;
}

describe.each(DRIVERS)('jobs: backups and exports over HTTP (%s)', (driver) => {
  let env: TestEnv;
  let dir: string;
  let acme: { id: string; slug: string; key: string };
  let other: { id: string; slug: string; key: string };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tenantry-jobs-'));
    env = await startTestEnv(driver, {
      entities: EXAMPLE_ENTITIES,
      backups: { directory: dir, exportsPerHour: 2 },
    } as never);
    acme = await env.createTenant('jobs-acme');
    other = await env.createTenant('jobs-other');
    for (const [tenant, name] of [
      [acme, 'acme project'],
      [other, 'other project'],
    ] as const) {
      const created = await env.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: { 'x-api-key': tenant.key },
        payload: { name },
      });
      expect(created.statusCode).toBe(201);
    }
    await env.inject({
      method: 'POST',
      url: '/api/v1/users',
      headers: { 'x-api-key': acme.key },
      payload: { email: 'someone@jobs-acme.test', password: 'a long password 1' },
    });
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const job = async (url: string, headers: Record<string, string>) => {
    return eventually(`${url} finished`, async () => {
      const response = await env.inject({ url, headers });
      expect(response.statusCode).toBe(200);
      const body = response.json() as JobJson;
      return body.status === 'running' ? undefined : body;
    });
  };
  const adminHeaders = { authorization: 'Bearer test-admin-token-0123456789abcdefghij' };

  it('starts a backup as a job, follows it, lists it and downloads an archive that restores', async () => {
    const started = await env.admin('POST', `/admin/tenants/${acme.slug}/backups`, {});
    expect(started.statusCode).toBe(202);
    const { id } = started.json() as JobJson;
    expect(started.headers.location).toBe(`/admin/jobs/${id}`);
    const done = await job(`/admin/jobs/${id}`, adminHeaders);
    expect(done).toMatchObject({ status: 'succeeded', download: `/admin/jobs/${id}/download` });
    expect(done.result).toMatchObject({ rows: 1, tenant: { slug: acme.slug } });
    const listed = await env.admin('GET', `/admin/jobs?tenant=${acme.slug}&kind=backup`);
    expect((listed.json() as { items: JobJson[] }).items.map((item) => item.id)).toContain(id);

    const download = await env.admin('GET', `/admin/jobs/${id}/download`);
    expect(download.statusCode).toBe(200);
    expect(download.headers['content-disposition']).toBe(`attachment; filename="${id}.tenantry.tgz"`);
    const { header } = await verifyArchive(Readable.from([download.rawPayload]));
    expect(header.tenant).toMatchObject({ slug: acme.slug });
    const restored = await restoreTenant(
      env.engine.archives,
      Readable.from([download.rawPayload]),
      { actor: { kind: 'cli', id: 'test' } },
      { as: 'jobs-restored', skipConflictingUsers: true },
    );
    expect(restored.rows).toBe(1);
  });

  it('answers 404 for a job that does not exist, 400 for an id that is none, and keeps tenants out', async () => {
    expect((await env.admin('GET', '/admin/jobs/0193a0c4-0000-7000-8000-000000000009')).statusCode).toBe(404);
    expect((await env.admin('GET', '/admin/jobs/not-a-job')).statusCode).toBe(400);
    const asTenant = await env.inject({ url: '/admin/jobs', headers: { 'x-api-key': acme.key } });
    expect([401, 403]).toContain(asTenant.statusCode);
    expect((await env.admin('POST', '/admin/tenants/no-such-tenant/backups', {})).statusCode).toBe(404);
  });

  it('refuses forged credentials, a bad body and a huge one on the job and export routes, changing nothing', async () => {
    const before = (await env.engine.jobs.store.list()).length;
    // Host names one tenant, the key another: cross_tenant, whatever the route.
    const forged = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { host: `${other.slug}.localhost`, 'x-api-key': acme.key },
    });
    expect(forged.statusCode).toBe(403);
    expect(forged.json()).toMatchObject({ code: 'cross_tenant' });
    const badKey = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': 'tny_nope_nope' },
    });
    expect(badKey.statusCode).toBe(401);
    const unknownHost = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { host: 'nobody.localhost' },
    });
    expect(unknownHost.statusCode).toBe(404);
    const malformed = await env.inject({
      method: 'POST',
      url: `/admin/tenants/${acme.slug}/backups`,
      headers: { authorization: adminHeaders.authorization, 'content-type': 'application/json' },
      payload: '{"includeAudit": tru',
    });
    expect(malformed.statusCode).toBe(400);
    const unknownMember = await env.admin('POST', `/admin/tenants/${acme.slug}/backups`, {
      file: '/etc/passwd',
    });
    expect(unknownMember.statusCode).toBe(400);
    const huge = await env.inject({
      method: 'POST',
      url: `/admin/tenants/${acme.slug}/backups`,
      headers: { authorization: adminHeaders.authorization, 'content-type': 'application/json' },
      payload: JSON.stringify({ includeAudit: true, padding: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(huge.statusCode).toBe(413);
    const otherTenantsKey = await env.inject({
      method: 'POST',
      url: `/admin/tenants/${acme.slug}/backups`,
      headers: { 'x-api-key': other.key },
    });
    expect([401, 403]).toContain(otherTenantsKey.statusCode);
    expect((await env.engine.jobs.store.list()).length).toBe(before);
  });

  it('says a job whose process stopped beating was interrupted', async () => {
    await env.engine.db.owner.query(
      `INSERT INTO tenantry.jobs (id, kind, tenant_id, status, actor, heartbeat_at)
       VALUES ('0193a0c4-0000-7000-8000-00000000dead', 'backup', $1, 'running', 'cli:test', now() - interval '5 minutes')`,
      [acme.id],
    );
    const shown = await env.admin('GET', '/admin/jobs/0193a0c4-0000-7000-8000-00000000dead');
    expect(shown.json()).toMatchObject({
      status: 'interrupted',
      error: { code: 'interrupted' },
      download: null,
    });
  });

  it('exports a tenant’s own data for itself, and no other tenant can see or take it', async () => {
    const started = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': acme.key },
    });
    expect(started.statusCode).toBe(202);
    const view = started.json() as JobJson & { tenantId?: string };
    expect(view.tenantId).toBeUndefined();
    const done = await job(`/api/v1/export/${view.id}`, { 'x-api-key': acme.key });
    expect(done).toMatchObject({ status: 'succeeded', download: `/api/v1/export/${view.id}/download` });

    // Another tenant: no such export, whether it asks for the job or its file.
    for (const url of [`/api/v1/export/${view.id}`, `/api/v1/export/${view.id}/download`]) {
      const response = await env.inject({ url, headers: { 'x-api-key': other.key } });
      expect(response.statusCode).toBe(404);
      expect(response.body).not.toContain('acme project');
    }

    const download = await env.inject({
      url: `/api/v1/export/${view.id}/download`,
      headers: { 'x-api-key': acme.key },
    });
    expect(download.statusCode).toBe(200);
    const files = await entries(download.rawPayload);
    expect(JSON.parse(files.get('export.json')!)).toMatchObject({
      format: 'tenantry-export',
      tenant: { slug: acme.slug },
    });
    const projects = files
      .get('entities/projects/000000.jsonl')!
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(projects.map((project) => project.name)).toEqual(['acme project']);
    expect(projects[0]).not.toHaveProperty('tenant_id');
    const users = files.get('users.jsonl')!;
    expect(users).toContain('someone@jobs-acme.test');
    expect(users).not.toMatch(/password|hash|\$argon|\$pbkdf|scrypt/i);
    const audit = await env.engine.db.owner.query(
      "SELECT action FROM tenantry.audit_log WHERE tenant_id = $1 AND action LIKE 'tenant.export%' ORDER BY id",
      [acme.id],
    );
    expect(audit.rows.map((row) => row.action)).toEqual(['tenant.export', 'tenant.export.download']);
  });

  it('refuses an export past the hourly allowance, and to a key without data:export', async () => {
    const second = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': other.key },
    });
    expect(second.statusCode).toBe(202);
    await job(`/api/v1/export/${(second.json() as JobJson).id}`, { 'x-api-key': other.key });
    const third = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': other.key },
    });
    expect(third.statusCode).toBe(202);
    await job(`/api/v1/export/${(third.json() as JobJson).id}`, { 'x-api-key': other.key });
    const refused = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': other.key },
    });
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['retry-after']).toBe('3600');

    const scoped = await env.inject({
      method: 'POST',
      url: '/api/v1/keys',
      headers: { 'x-api-key': acme.key },
      payload: { name: 'reader', permissions: ['projects:read'] },
    });
    expect(scoped.statusCode).toBe(201);
    const readerKey = (scoped.json() as { key: string }).key;
    const forbidden = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': readerKey },
    });
    expect(forbidden.statusCode).toBe(403);
  });
});

describe.each(DRIVERS)('export retention (%s)', (driver) => {
  let env: TestEnv;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tenantry-export-retention-'));
    env = await startTestEnv(driver, { entities: EXAMPLE_ENTITIES, backups: { directory: dir } } as never);
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('deletes export files past their retention, and a late download is told the file is gone', async () => {
    const tenant = await env.createTenant('retention-acme');
    const started = await env.inject({
      method: 'POST',
      url: '/api/v1/export',
      headers: { 'x-api-key': tenant.key },
    });
    const { id } = started.json() as JobJson;
    await env.engine.jobs.idle();
    const [job] = await env.engine.jobs.store.list({ kind: 'export' });
    expect(job?.file && existsSync(job.file)).toBe(true);
    const pruning = exportPruning(24);
    // Young: kept.
    expect(await env.engine.db.owner.transaction((tx) => pruning.run(tx))).toMatchObject({ deleted: 0 });
    await env.engine.db.owner.query(
      "UPDATE tenantry.jobs SET finished_at = now() - interval '25 hours' WHERE id = $1",
      [id],
    );
    expect(await env.engine.db.owner.transaction((tx) => pruning.run(tx))).toMatchObject({ deleted: 1 });
    expect(existsSync(job!.file!)).toBe(false);
    const late = await env.inject({
      url: `/api/v1/export/${id}/download`,
      headers: { 'x-api-key': tenant.key },
    });
    expect(late.statusCode).toBe(404);
    const shown = await env.inject({ url: `/api/v1/export/${id}`, headers: { 'x-api-key': tenant.key } });
    expect(shown.json()).toMatchObject({ status: 'succeeded', download: null });
  });
});
