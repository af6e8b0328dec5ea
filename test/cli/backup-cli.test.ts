import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load-config.js';
import { Tenantry } from '../../src/tenantry.js';
import { type CliDeployment, cliDeployment, runCli } from '../helpers/cli.js';
import { ADMIN_TOKEN, DRIVERS } from '../helpers/harness.js';

const ENTITIES = `
entities:
  notes:
    scope: tenant
    fields:
      title: { type: text, required: true }
      parent: { type: ref, to: notes, onDelete: set-null }
`;
const NEWER_ENTITIES = `${ENTITIES}      pinned: { type: boolean, default: false }\n`;

describe.each(DRIVERS)('tenantry tenants backup|restore, on %s', (driver) => {
  let env: Record<string, string | undefined>;
  let dir: string;
  let deployment: CliDeployment | undefined;

  beforeAll(async () => {
    deployment = await cliDeployment(driver, ENTITIES, { TENANTRY_ADMIN_TOKEN: ADMIN_TOKEN });
    ({ env, dir } = deployment);
  }, 60_000);
  afterAll(async () => {
    await deployment?.close();
  });

  const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, { ...env, ...extra });

  it('backs up into a file, encrypted with the key of the environment, and restores it as a new tenant', async () => {
    expect((await cli(['tenants', 'create', 'Notes', 'notes-cli', '--isolation', 'schema'])).code).toBe(0);
    const key = randomBytes(32).toString('hex');
    const file = join(dir, 'notes.tgz');
    const backup = await cli(['tenants', 'backup', 'notes-cli', '-o', file, '--json'], {
      TENANTRY_BACKUP_KEY: key,
    });
    expect(backup.stderr).toBe('');
    expect(JSON.parse(backup.stdout)).toMatchObject({
      file,
      encrypted: true,
      rows: 0,
      tenant: { slug: 'notes-cli' },
    });
    // No temporary file is left beside it.
    expect(readdirSync(dir).filter((name) => name.includes('partial'))).toEqual([]);

    const noKey = await cli(['tenants', 'verify', file]);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/encrypted/);
    const wrongKey = await cli(['tenants', 'restore', file, '--as', 'notes-wrong'], {
      TENANTRY_BACKUP_KEY: randomBytes(32).toString('hex'),
    });
    expect(wrongKey.code).toBe(1);
    expect(wrongKey.stderr).toMatch(/error \(validation_failed\)/);

    const restored = await cli(
      ['tenants', 'restore', file, '--as', 'notes-copy', '--isolation', 'row', '--json'],
      {
        TENANTRY_BACKUP_KEY: key,
      },
    );
    expect(restored.stderr).toBe('');
    expect(JSON.parse(restored.stdout)).toMatchObject({
      tenant: { slug: 'notes-copy', isolation: 'row', status: 'active' },
      apiKey: { key: expect.stringMatching(/^tny_/) },
    });
    const text = await cli(['tenants', 'restore', file, '--as', 'notes-text'], { TENANTRY_BACKUP_KEY: key });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/api key:\s+tny_/);
    const list = JSON.parse((await cli(['tenants', 'list', '--json'])).stdout) as { slug: string }[];
    expect(list.map((tenant) => tenant.slug)).toEqual(expect.arrayContaining(['notes-copy', 'notes-text']));
    expect(list.map((tenant) => tenant.slug)).not.toContain('notes-wrong');
  }, 60_000);

  it('refuses an archive of newer entities with exit 2, and takes an older one forward', async () => {
    expect((await cli(['tenants', 'create', 'Old', 'old-cli'])).code).toBe(0);
    const file = join(dir, 'old.tgz');
    expect((await cli(['tenants', 'backup', 'old-cli', '-o', file])).code).toBe(0);
    // A second deployment, one entity version ahead, makes an archive this one cannot take.
    const newer = await cliDeployment(driver, ENTITIES);
    const newerEnv = newer.env;
    try {
      // Rows at version 1, a reference among them, backed up before the entities change.
      expect(
        (await runCli(['tenants', 'create', 'Rows', 'rows-cli', '--isolation', 'schema'], newerEnv)).code,
      ).toBe(0);
      const library = await Tenantry.open({ config: loadConfig({ env: newerEnv }) });
      try {
        await library.withTenant('rows-cli', async (db) => {
          const { rows } = await db.query<{ id: string }>(
            "INSERT INTO notes (tenant_id, id, title) VALUES (current_setting('tenantry.tenant_id')::uuid, gen_random_uuid(), 'root') RETURNING id",
          );
          await db.query(
            "INSERT INTO notes (tenant_id, id, title, parent) SELECT current_setting('tenantry.tenant_id')::uuid, gen_random_uuid(), 'child ' || n, $1 FROM generate_series(1, 2) n",
            [rows[0]!.id],
          );
        });
      } finally {
        await library.close();
      }
      const rowsFile = join(dir, 'rows-v1.tgz');
      expect((await runCli(['tenants', 'backup', 'rows-cli', '-o', rowsFile], newerEnv)).code).toBe(0);
      writeFileSync(newerEnv.TENANTRY_CONFIG!, NEWER_ENTITIES);
      const migrated = await runCli(['migrate'], newerEnv);
      expect(migrated.code).toBe(0);
      expect(
        (await runCli(['tenants', 'create', 'New', 'new-cli', '--isolation', 'schema'], newerEnv)).code,
      ).toBe(0);
      const newerFile = join(dir, 'newer.tgz');
      expect((await runCli(['tenants', 'backup', 'new-cli', '-o', newerFile], newerEnv)).code).toBe(0);
      const refused = await cli(['tenants', 'restore', newerFile, '--as', 'from-newer']);
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/entity version 2, newer than this deployment's latest \(1\)/);

      // The older archive goes forward into the newer deployment: the new field takes its default.
      for (const isolation of ['schema', 'row']) {
        const forward = await runCli(
          [
            'tenants',
            'restore',
            rowsFile,
            '--as',
            `forward-${isolation}`,
            '--isolation',
            isolation,
            '--json',
          ],
          newerEnv,
        );
        expect(forward.stderr).toBe('');
        expect(JSON.parse(forward.stdout)).toMatchObject({
          rows: 3,
          entityVersion: { archive: 1, restored: 2 },
        });
      }
      const library2 = await Tenantry.open({ config: loadConfig({ env: newerEnv }) });
      try {
        for (const slug of ['forward-schema', 'forward-row']) {
          const notes = await library2.withTenant(slug, (db) =>
            db.query<{ title: string; pinned: boolean; parent: string | null }>(
              'SELECT n.title, n.pinned, p.title AS parent FROM notes n LEFT JOIN notes p ON p.id = n.parent ORDER BY n.title',
            ),
          );
          expect(notes.rows).toEqual([
            { title: 'child 1', pinned: false, parent: 'root' },
            { title: 'child 2', pinned: false, parent: 'root' },
            { title: 'root', pinned: false, parent: null },
          ]);
        }
      } finally {
        await library2.close();
      }
    } finally {
      await newer.close();
    }
    expect(existsSync(file)).toBe(true);
  }, 120_000);

  it("refuses an archive of another Tenantry's entities, and creates nothing", async () => {
    // Version 1 there, as here, but of other entities.
    const other = await cliDeployment(
      driver,
      'entities:\n  memos:\n    scope: tenant\n    fields:\n      text: { type: text }\n',
    );
    const otherEnv = other.env;
    try {
      expect((await runCli(['tenants', 'create', 'Foreign', 'foreign-cli'], otherEnv)).code).toBe(0);
      const file = join(dir, 'foreign.tgz');
      expect((await runCli(['tenants', 'backup', 'foreign-cli', '-o', file], otherEnv)).code).toBe(0);
      const refused = await cli(['tenants', 'restore', file]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toMatch(/an archive of another Tenantry's entities/);
      const list = JSON.parse((await cli(['tenants', 'list', '--json'])).stdout) as { slug: string }[];
      expect(list.map((tenant) => tenant.slug)).not.toContain('foreign-cli');
    } finally {
      await other.close();
    }
  }, 60_000);
});
