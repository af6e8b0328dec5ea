import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { INDEXED_TEXT_MAX_BYTES } from '../../src/entities/entity.js';
import { normaliseEntities } from '../../src/entities/entity-config.js';
import type { EntityDb } from '../../src/entities/entity-db.js';
import { EntityRepository } from '../../src/entities/entity-repository.js';
import { ConfigError } from '../../src/errors.js';
import { runCli } from '../helpers/cli.js';
import { DRIVERS, startTestEnv, type TestEnv } from '../helpers/harness.js';

/**
 * A btree index entry holds at most 2704 bytes: a longer value in a unique or indexed text field
 * made PostgreSQL refuse the write ("index row requires 11480 bytes, maximum size is 2704"), which
 * was answered 500. Such fields hold at most INDEXED_TEXT_MAX_BYTES bytes of UTF-8, refused 400
 * naming the field, nothing written.
 */
const DECLARATIONS = {
  accounts: {
    scope: 'tenant',
    fields: {
      email: { type: 'text', required: true, unique: true },
      tag: { type: 'text', index: true },
      note: { type: 'text' },
    },
  },
  regions: {
    scope: 'shared',
    fields: { code: { type: 'text', required: true, unique: true } },
  },
};
const ENTITIES = normaliseEntities(DECLARATIONS);

const ONE_MEGABYTE = 'x'.repeat(1_000_000);
/**
 * 700 characters, within the character limit, but 2800 bytes: more than a btree entry holds
 * uncompressed (this repetitive one compresses, so PostgreSQL took it; random text would not fit).
 */
const WIDE = '😀'.repeat(700);

describe.each(DRIVERS)('unique and indexed text fields fit their index, on %s', (driver) => {
  let env: TestEnv;
  let tenant: { key: string };
  const as = () => ({ 'x-api-key': tenant.key });
  const post = (payload: unknown, url = '/api/v1/accounts') =>
    env.inject({ method: 'POST', url, headers: as(), payload: payload as Record<string, unknown> });
  const count = async () =>
    (await env.inject({ url: '/api/v1/accounts', headers: as() })).json().items.length;

  beforeAll(async () => {
    env = await startTestEnv(driver, { entities: ENTITIES });
    tenant = await env.createTenant('limits-co');
  });
  afterAll(async () => {
    await env?.close();
  });

  it.each([
    ['a unique field', { email: ONE_MEGABYTE }, 'email'],
    ['an indexed field', { email: 'a@example.com', tag: ONE_MEGABYTE }, 'tag'],
    ['a unique field, in bytes (700 emoji)', { email: WIDE }, 'email'],
    ['an indexed field, in bytes (700 emoji)', { email: 'b@example.com', tag: WIDE }, 'tag'],
  ])('a too long value in %s is a 400 naming the field; nothing is written', async (_what, body, name) => {
    const response = await post(body);
    expect(response.statusCode, response.body).toBe(400);
    expect(response.json()).toMatchObject({ code: 'validation_failed', field: name });
    expect(response.json().detail).toMatch(new RegExp(`^${name} `));
    expect(await count()).toBe(0);
  });

  it(`takes ${INDEXED_TEXT_MAX_BYTES} bytes, and a long value in an unindexed field`, async () => {
    const fits = await post({
      email: 'e'.repeat(INDEXED_TEXT_MAX_BYTES),
      tag: '€'.repeat(666),
      note: ONE_MEGABYTE,
    });
    expect(fits.statusCode, fits.body).toBe(201);
    const over = await post({ email: `${'e'.repeat(INDEXED_TEXT_MAX_BYTES - 2)}€` });
    expect(over.statusCode).toBe(400);
    expect(over.json().detail).toBe(
      `email is longer than ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8, the most a unique or indexed text field holds`,
    );
  });

  it('refuses the same in a PATCH and in a batch, changing nothing', async () => {
    const created = await post({ email: 'patch@example.com' });
    const id = created.json().id as string;
    for (const value of [ONE_MEGABYTE, WIDE]) {
      const patched = await env.inject({
        method: 'PATCH',
        url: `/api/v1/accounts/${id}`,
        headers: as(),
        payload: { email: value },
      });
      expect(patched.statusCode, patched.body).toBe(400);
      expect(patched.json()).toMatchObject({ code: 'validation_failed', field: 'email' });
    }
    const row = await env.inject({ url: `/api/v1/accounts/${id}`, headers: as() });
    expect(row.json().email).toBe('patch@example.com');

    const before = await count();
    const batch = await post(
      { rows: [{ email: 'one@example.com' }, { email: WIDE }] },
      '/api/v1/accounts/batch',
    );
    expect(batch.statusCode, batch.body).toBe(400);
    expect(batch.json()).toMatchObject({ code: 'validation_failed', field: 'rows/1/email' });
    expect(await count()).toBe(before);
  });

  it('refuses it in a unique field of a shared entity (admin writes)', async () => {
    for (const code of [ONE_MEGABYTE, WIDE]) {
      const response = await env.admin('POST', '/admin/shared/regions', { code });
      expect(response.statusCode, response.body).toBe(400);
      expect(response.json()).toMatchObject({ code: 'validation_failed', field: 'code' });
    }
    expect((await env.admin('GET', '/admin/shared/regions')).json().items).toEqual([]);
  });

  it('documents the limit in the OpenAPI document', async () => {
    const document = JSON.stringify((await env.inject({ url: '/openapi.json' })).json());
    expect(document).toContain(`at most ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8 (unique or indexed)`);
  });
});

describe('the repository refuses it for library callers too', () => {
  // Validation runs before any statement: a handle that fails when used proves nothing was sent.
  const unusable = new Proxy({} as EntityDb, {
    get: () => {
      throw new Error('the database was used');
    },
  });
  const accounts = new EntityRepository(ENTITIES.find((entity) => entity.name === 'accounts')!);

  it.each([
    ['characters', ONE_MEGABYTE],
    ['bytes', WIDE],
  ])('too many %s: validation_failed naming the field', async (_what, email) => {
    await expect(accounts.create(unusable, { email })).rejects.toMatchObject({
      code: 'validation_failed',
      field: 'email',
    });
    await expect(
      accounts.update(unusable, '0b7c6a52-9a52-4c4b-8f0e-3f9a3c1d2e01', { tag: email }),
    ).rejects.toMatchObject({ code: 'validation_failed', field: 'tag' });
  });
});

describe('a declared maxLength above the index limit', () => {
  const F = 'entities.notes.fields.f';
  const declare = (field: Record<string, unknown>) => () =>
    normaliseEntities({ notes: { scope: 'tenant', fields: { f: field } } });

  it('is refused for unique and indexed text fields, naming maxLength', () => {
    for (const option of ['unique', 'index']) {
      const declaration = declare({ type: 'text', [option]: true, maxLength: INDEXED_TEXT_MAX_BYTES + 1 });
      expect(declaration).toThrow(ConfigError);
      expect(declaration).toThrow(
        `${F}.maxLength: is above ${INDEXED_TEXT_MAX_BYTES}: a text field with ${option}: true holds at most ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8`,
      );
    }
  });

  it('is accepted up to the limit, and without an index', () => {
    expect(declare({ type: 'text', unique: true, maxLength: INDEXED_TEXT_MAX_BYTES })).not.toThrow();
    expect(declare({ type: 'text', maxLength: 1_000_000 })).not.toThrow();
  });

  it('refuses a default that does not fit the index', () => {
    expect(declare({ type: 'text', index: true, default: '€'.repeat(700) })).toThrow(
      `${F}.default: is longer than ${INDEXED_TEXT_MAX_BYTES} bytes of UTF-8`,
    );
  });

  it('stops the CLI with exit 2 naming the key, creating nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tenantry-indexed-'));
    try {
      const file = join(dir, 'tenantry.config.yaml');
      const fields = { email: { type: 'text', unique: true, maxLength: 5000 } };
      writeFileSync(file, YAML.stringify({ entities: { accounts: { scope: 'tenant', fields } } }));
      const result = await runCli(['init-db', '--config', file], { TENANTRY_DATA_DIR: join(dir, 'data') });
      expect(result.code).toBe(2);
      expect(result.stderr).toContain(
        'config error: entities.accounts.fields.email.maxLength: is above 2000',
      );
      expect(existsSync(join(dir, 'data'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
