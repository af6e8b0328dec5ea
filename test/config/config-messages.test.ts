import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/load-config.js';
import { runCli } from '../helpers/cli.js';

/** Config errors a person fixes by reading them: the key, and what it may be. */
describe('config error messages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tenantry-config-messages-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (content: Record<string, unknown>) => {
    const path = join(dir, 'tenantry.config.yaml');
    writeFileSync(path, YAML.stringify(content));
    return path;
  };
  const load =
    (content: Record<string, unknown>, env: Record<string, string> = {}) =>
    () =>
      loadConfig({ file: file(content), env });

  it('an enum setting lists its values instead of "must be equal to constant"', () => {
    expect(load({ tenancy: { defaultIsolation: 'cluster' } })).toThrow(
      'tenancy.defaultIsolation: must be one of row, schema, database',
    );
    expect(load({ cache: { store: 'disk' } })).toThrow('cache.store: must be one of memory, redis');
  });

  it('an entity field type or onDelete lists the allowed ones', () => {
    const fields = (f: Record<string, unknown>) => ({
      entities: { notes: { scope: 'tenant', fields: { f } } },
    });
    expect(load(fields({ type: 'money' }))).toThrow(
      'entities.notes.fields.f.type: must be one of text, integer, number, boolean, date, timestamp, uuid, json, enum, ref',
    );
    expect(load(fields({ type: 'ref', to: 'notes', onDelete: 'nullify' }))).toThrow(
      'entities.notes.fields.f.onDelete: must be one of cascade, restrict, set-null',
    );
    expect(load({ entities: { notes: { scope: 'global', fields: {} } } })).toThrow(
      'entities.notes.scope: must be one of tenant, shared',
    );
  });

  it('an integer environment variable out of range gives the range', () => {
    expect(load({}, { LOG_RETENTION_DAYS: '-1' })).toThrow(
      'LOG_RETENTION_DAYS: must be an integer from 1 to 36500, got "-1"',
    );
    expect(load({}, { LOG_RETENTION_DAYS: '0' })).toThrow(
      'LOG_RETENTION_DAYS: must be an integer from 1 to 36500, got "0"',
    );
    expect(load({}, { LOG_RETENTION_DAYS: 'ninety' })).toThrow(
      'LOG_RETENTION_DAYS: must be an integer from 1 to 36500, got "ninety"',
    );
    expect(load({}, { PORT: '70000' })).toThrow('PORT: must be an integer from 0 to 65535, got "70000"');
    expect(load({}, { PORT: '-80' })).toThrow('PORT: must be an integer from 0 to 65535, got "-80"');
  });

  it('the CLI prints the same, exit 2', async () => {
    const result = await runCli(
      ['tenants', 'list', '--config', file({ tenancy: { defaultIsolation: 'x' } })],
      {
        TENANTRY_DATA_DIR: join(dir, 'data'),
      },
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toBe(
      'config error: tenancy.defaultIsolation: must be one of row, schema, database\n',
    );
    const days = await runCli(['tenants', 'list'], {
      TENANTRY_CONFIG: file({}),
      TENANTRY_DATA_DIR: join(dir, 'data'),
      LOG_RETENTION_DAYS: '-1',
    });
    expect(days.code).toBe(2);
    expect(days.stderr).toBe(
      'config error: LOG_RETENTION_DAYS: must be an integer from 1 to 36500, got "-1"\n',
    );
  });

  it('records where the database URLs came from, for messages', () => {
    const fromEnv = loadConfig({
      file: file({ database: { url: 'postgres://file/app' } }),
      env: { DATABASE_URL: 'postgres://env/app', DATABASE_ADMIN_URL: 'postgres://owner@env/app' },
    }).database;
    expect(fromEnv).toMatchObject({ url: 'postgres://env/app', urlSource: 'DATABASE_URL' });
    expect(fromEnv.adminUrlSource).toBe('DATABASE_ADMIN_URL');
    const fromFile = loadConfig({
      file: file({ database: { url: 'postgres://file/app', adminUrl: 'postgres://owner@file/app' } }),
      env: {},
    }).database;
    expect(fromFile).toMatchObject({ urlSource: 'database.url', adminUrlSource: 'database.adminUrl' });
    const embedded = loadConfig({ file: file({}), env: {} }).database;
    expect(embedded).toMatchObject({ urlSource: undefined, adminUrlSource: undefined });
  });
});
