import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import { readArchive } from '../../src/lifecycle/archive/archive-reader.js';
import { type BackupReport, backupTenantToFile } from '../../src/lifecycle/tenant-backup.js';
import { type RestoreOptions, restoreTenant } from '../../src/lifecycle/tenant-restore.js';
import type { IsolationLevel } from '../../src/tenants/tenant.js';
import { exampleDeclaration } from '../helpers/entities.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

const CONTEXT = { actor: { kind: 'cli', id: 'test' } } as const;

/** The example entities, plus a reference to itself and a cycle of two optional references. */
const ENTITIES = {
  ...exampleDeclaration(),
  people: {
    scope: 'tenant',
    fields: {
      name: { type: 'text', required: true },
      manager: { type: 'ref', to: 'people', onDelete: 'set-null' },
      team: { type: 'ref', to: 'teams', onDelete: 'set-null' },
      born: { type: 'timestamp' },
      score: { type: 'integer' },
      badge: { type: 'uuid' },
    },
  },
  teams: {
    scope: 'tenant',
    fields: {
      title: { type: 'text', required: true },
      lead: { type: 'ref', to: 'people', onDelete: 'set-null' },
    },
  },
};

interface Seeded {
  readonly id: string;
  readonly slug: string;
  readonly key: string;
}

async function api(env: TestEnv, key: string, method: 'POST' | 'PATCH', url: string, body: unknown) {
  const response = await env.inject({ method, url, headers: { 'x-api-key': key }, payload: body as object });
  if (response.statusCode >= 300)
    throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
  return response.json() as { id: string };
}

/** Rows of every kind the archive must carry unchanged. */
async function seed(env: TestEnv, slug: string, isolation: IsolationLevel): Promise<Seeded> {
  const tenant = await env.createTenant(slug, { isolation });
  const { key } = tenant;
  const project = await api(env, key, 'POST', '/api/v1/projects', { name: 'École 北京 🚀 "quoted"\ttab' });
  await api(env, key, 'POST', '/api/v1/projects', { name: 'back\\slash\nnewline', status: 'archived' });
  await api(env, key, 'POST', '/api/v1/tasks', {
    project: project.id,
    title: 'x'.repeat(200_000),
    done: true,
    due: '2026-02-28',
    estimate: 0.1,
    meta: { nested: [1, 'two', null, { deep: true }], unicode: 'Ä\u0000'.replace('\u0000', '') },
  });
  await api(env, key, 'POST', '/api/v1/tasks', { project: project.id, title: 'tiny', estimate: 1e300 });
  // A child made before its manager, then the cycle person -> team -> person.
  const child = await api(env, key, 'POST', '/api/v1/people', {
    name: 'child',
    born: '2001-02-03T04:05:06.789Z',
    score: 9007199254740991,
    badge: '0193a0c4-0000-7000-8000-00000000abcd',
  });
  const boss = await api(env, key, 'POST', '/api/v1/people', { name: 'boss' });
  await api(env, key, 'PATCH', `/api/v1/people/${child.id}`, { manager: boss.id });
  await api(env, key, 'PATCH', `/api/v1/people/${boss.id}`, { manager: boss.id });
  const team = await api(env, key, 'POST', '/api/v1/teams', { title: 'core', lead: boss.id });
  await api(env, key, 'PATCH', `/api/v1/people/${boss.id}`, { team: team.id });
  await api(env, key, 'POST', '/api/v1/users', {
    email: `owner@${slug}.test`,
    name: 'Owner',
    password: 'a long password 1',
  });
  return tenant;
}

/** The archive with one byte flipped, at the first place from the middle where that changes its content. */
function changedByFlip(bytes: Buffer): Buffer {
  const original = gunzipSync(bytes);
  for (let at = Math.floor(bytes.length / 2); at < bytes.length - 8; at += 1) {
    const flipped = Buffer.from(bytes);
    flipped[at]! ^= 0x01;
    try {
      if (!gunzipSync(flipped).equals(original)) return flipped;
    } catch {
      return flipped;
    }
  }
  throw new Error('no byte of the archive changes it');
}

/** The data sections' checksums of a backup: equal rows give equal checksums. */
function dataChecksums(report: BackupReport): Record<string, string> {
  return Object.fromEntries(
    report.sections
      .filter((section) => section.section.startsWith('data/'))
      .map((section) => [section.section, `${section.rows}:${section.sha256}`]),
  );
}

describe.each(DRIVERS)('backup and restore (%s)', (driver) => {
  let env: TestEnv;
  let dir: string;
  const levels: IsolationLevel[] = driver === 'postgres' ? ['row', 'schema', 'database'] : ['row', 'schema'];

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: normaliseEntities(ENTITIES) });
    dir = await mkdtemp(join(tmpdir(), 'tenantry-backup-'));
  }, 60_000);

  afterAll(async () => {
    await env?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const backup = (tenant: string, file: string) =>
    backupTenantToFile(env.engine.archives, tenant, join(dir, file), CONTEXT);
  const restore = (file: string, options: RestoreOptions) =>
    restoreTenant(env.engine.archives, createReadStream(join(dir, file)), CONTEXT, options);

  it.each(levels)(
    'a %s tenant comes back identical at every level',
    async (source) => {
      const tenant = await seed(env, `src-${source}`, source);
      const bystander = await seed(env, `by-${source}`, 'row');
      const original = await backup(tenant.slug, `${source}.tar.gz`);
      const bystanderBefore = await backup(bystander.slug, `by-${source}-before.tar.gz`);
      expect(original.rows).toBe(7);
      for (const target of levels) {
        const restored = await restore(`${source}.tar.gz`, {
          as: `${source}-to-${target}`,
          isolation: target,
          skipConflictingUsers: true,
        });
        expect(restored.tenant).toMatchObject({
          status: 'active',
          isolation: target,
          slug: `${source}-to-${target}`,
        });
        expect(restored.rows).toBe(7);
        expect(restored.skippedUsers).toEqual([`owner@${tenant.slug}.test`]);
        const again = await backup(restored.tenant.slug, `${source}-to-${target}.tar.gz`);
        expect(dataChecksums(again)).toEqual(dataChecksums(original));
        // The new key reaches the restored rows, and only them.
        const list = await env.inject({
          url: '/api/v1/people?sort=name',
          headers: { 'x-api-key': restored.apiKey!.key },
        });
        expect(list.statusCode).toBe(200);
        expect((list.json() as { items: { name: string }[] }).items.map((item) => item.name)).toEqual([
          'boss',
          'child',
        ]);
      }
      const bystanderAfter = await backup(bystander.slug, `by-${source}-after.tar.gz`);
      expect(dataChecksums(bystanderAfter)).toEqual(dataChecksums(bystanderBefore));
    },
    120_000,
  );

  it.each(levels)(
    'replaces a %s tenant’s rows with the archive’s in one step, keeping its users and keys',
    async (level) => {
      const tenant = await seed(env, `replace-${level}`, level);
      const bystander = await seed(env, `replace-by-${level}`, level);
      const before = await backup(tenant.slug, `replace-${level}-a.tar.gz`);
      const bystanderBefore = await backup(bystander.slug, `replace-by-${level}-a.tar.gz`);
      // The customer's mistake: rows deleted, changed and added after the backup.
      const people = await env.inject({ url: '/api/v1/people', headers: { 'x-api-key': tenant.key } });
      const [first] = (people.json() as { items: { id: string }[] }).items;
      await env.inject({
        method: 'DELETE',
        url: `/api/v1/people/${first!.id}`,
        headers: { 'x-api-key': tenant.key },
      });
      await api(env, tenant.key, 'POST', '/api/v1/projects', { name: 'made after the backup' });
      await api(env, tenant.key, 'POST', '/api/v1/users', {
        email: `later@${tenant.slug}.test`,
        password: 'a long password 2',
      });
      const changed = await backup(tenant.slug, `replace-${level}-b.tar.gz`);
      expect(dataChecksums(changed)).not.toEqual(dataChecksums(before));

      // A damaged archive changes nothing.
      const bytes = await readFile(join(dir, `replace-${level}-a.tar.gz`));
      await writeFile(join(dir, `replace-${level}-cut.tar.gz`), bytes.subarray(0, bytes.length - 100));
      await expect(restore(`replace-${level}-cut.tar.gz`, { replace: true })).rejects.toMatchObject({
        field: 'archive',
      });
      expect(dataChecksums(await backup(tenant.slug, `replace-${level}-c.tar.gz`))).toEqual(
        dataChecksums(changed),
      );

      const replaced = await restore(`replace-${level}-a.tar.gz`, { replace: true });
      expect(replaced).toMatchObject({
        replaced: true,
        rows: 7,
        tenant: { id: tenant.id, status: 'active' },
      });
      expect(replaced.apiKey).toBeUndefined();
      expect(dataChecksums(await backup(tenant.slug, `replace-${level}-d.tar.gz`))).toEqual(
        dataChecksums(before),
      );
      // Its key, and the user made after the backup, are still there.
      const list = await env.inject({ url: '/api/v1/users', headers: { 'x-api-key': tenant.key } });
      expect(list.statusCode).toBe(200);
      expect(list.body).toContain(`later@${tenant.slug}.test`);
      expect(dataChecksums(await backup(bystander.slug, `replace-by-${level}-b.tar.gz`))).toEqual(
        dataChecksums(bystanderBefore),
      );
    },
    120_000,
  );

  it('refuses to replace with a new isolation level, or a tenant that does not exist', async () => {
    const tenant = await seed(env, 'replace-refused', 'row');
    await backup(tenant.slug, 'replace-refused.tar.gz');
    await expect(
      restore('replace-refused.tar.gz', { replace: true, isolation: 'schema' }),
    ).rejects.toMatchObject({
      code: 'validation_failed',
      field: 'isolation',
    });
    await expect(
      restore('replace-refused.tar.gz', { replace: true, as: 'nobody-here' }),
    ).rejects.toMatchObject({
      code: 'tenant_not_found',
    });
  });

  it('restores users, roles and groups under new ids, and refuses taken emails unless told', async () => {
    const tenant = await seed(env, 'people-src', 'row');
    await backup(tenant.slug, 'people.tar.gz');
    await expect(restore('people.tar.gz', { as: 'people-copy' })).rejects.toMatchObject({
      code: 'conflict',
      field: 'users',
    });
    // Refused whole: nothing of it stays, not even the slug.
    expect(await env.engine.store.findBySlug('people-copy')).toBeUndefined();
    await env.admin('DELETE', `/admin/tenants/${tenant.slug}?purge=true`);
    const restored = await restore('people.tar.gz', {});
    expect(restored.tenant.slug).toBe('people-src');
    expect(restored.tenant.id).not.toBe(tenant.id);
    expect(restored.users).toBe(1);
    expect(restored.notRestored).toMatchObject({ 'api-keys': 1 });
    const login = await env.inject({
      method: 'POST',
      url: '/auth/login',
      headers: { host: 'people-src.localhost' },
      payload: { email: 'owner@people-src.test', password: 'a long password 1' },
    });
    expect([200, 201]).toContain(login.statusCode);
  }, 60_000);

  it('refuses a damaged archive and leaves nothing behind', async () => {
    const tenant = await seed(env, 'damaged-src', 'row');
    await backup(tenant.slug, 'damaged.tar.gz');
    const bytes = await readFile(join(dir, 'damaged.tar.gz'));
    // A flipped bit can land where deflate does not look (an unused code length): the archive is
    // then intact, and restoring it is right. The byte flipped here changes what it decodes to.
    const flipped = changedByFlip(bytes);
    await writeFile(join(dir, 'flipped.tar.gz'), flipped);
    await writeFile(join(dir, 'cut.tar.gz'), bytes.subarray(0, bytes.length - 200));
    for (const file of ['flipped.tar.gz', 'cut.tar.gz']) {
      await expect(restore(file, { as: 'damaged-copy', skipConflictingUsers: true })).rejects.toMatchObject({
        code: 'validation_failed',
        field: 'archive',
      });
      expect(await env.engine.store.findBySlug('damaged-copy')).toBeUndefined();
    }
    const { rows } = await env.engine.db.owner.query(
      "SELECT id FROM tenantry.tenants WHERE status = 'restoring'",
    );
    expect(rows).toEqual([]);
  }, 60_000);

  it('keeps the header readable: the tenant and its entity version', async () => {
    const tenant = await seed(env, 'header-src', 'schema');
    await backup(tenant.slug, 'header.tar.gz');
    for await (const event of readArchive(createReadStream(join(dir, 'header.tar.gz')))) {
      if (event.kind !== 'header') continue;
      expect(event.header.tenant).toMatchObject({ slug: 'header-src', isolation: 'schema' });
      expect(event.header.entities.version).toBeGreaterThanOrEqual(1);
      break;
    }
  });
});
