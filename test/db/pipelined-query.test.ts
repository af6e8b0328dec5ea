import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelinedQuery } from '../../src/db/pipelined-query.js';
import { POSTGRES_SERVER_URL, postgresAvailable } from '../helpers/postgres.js';

const POSTGRES = await postgresAvailable();

const setting = (value: string, name = 'test_setting') => ({
  name,
  text: `SELECT set_config('tenantry.probe', $1, true)`,
  values: [value],
});
const readSetting = { text: `SELECT current_setting('tenantry.probe', true) AS value`, values: [] };

describe.runIf(POSTGRES)('pipelined query with a named setup statement', () => {
  let client: pg.Client;

  beforeAll(async () => {
    client = new pg.Client(POSTGRES_SERVER_URL);
    await client.connect();
  });
  afterAll(async () => client?.end());

  const preparedCount = async (name: string) =>
    (await client.query('SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name = $1', [name]))
      .rows[0].n as number;

  it('parses the setup once per connection and binds it by name afterwards', async () => {
    for (const value of ['a', 'b', 'c']) {
      const { rows } = await pipelinedQuery<{ value: string }>(client, [setting(value)], readSetting);
      expect(rows).toEqual([{ value }]);
    }
    expect(await preparedCount('test_setting')).toBe(1);
  });

  it('keeps working after the main statement fails, and the failure rolls the setup back', async () => {
    await expect(
      pipelinedQuery(client, [setting('x')], { text: 'SELECT 1/0', values: [] }),
    ).rejects.toMatchObject({ code: '22012' });
    const { rows } = await pipelinedQuery<{ value: string }>(client, [setting('y')], readSetting);
    expect(rows).toEqual([{ value: 'y' }]);
    // Transaction-local: nothing of the pipeline outlives it.
    expect((await client.query(readSetting.text)).rows).toEqual([{ value: '' }]);
  });

  it('recovers when the setup itself fails on first use (prepared but never completed)', async () => {
    const failing = {
      name: 'test_failing_setup',
      text: `SELECT set_config('tenantry.probe', $1, true), 1 / $2::int`,
      values: ['z', 0],
    };
    await expect(pipelinedQuery(client, [failing], readSetting)).rejects.toMatchObject({ code: '22012' });
    // The statement exists on the server now, but the pipeline could not tell: the next use
    // closes it before parsing it again instead of failing with "already exists".
    const { rows } = await pipelinedQuery<{ value: string }>(
      client,
      [{ ...failing, values: ['w', 1] }],
      readSetting,
    );
    expect(rows).toEqual([{ value: 'w' }]);
    expect(await preparedCount('test_failing_setup')).toBe(1);
  });

  it('parses again when the parse itself failed (the statement was never created)', async () => {
    const table = `tenantry_probe_${process.pid}`;
    const counting = { name: 'test_counting', text: `SELECT count(*) FROM ${table}`, values: [] };
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await expect(pipelinedQuery(client, [counting], readSetting)).rejects.toMatchObject({ code: '42P01' });
    await client.query(`CREATE TABLE ${table} (id int)`);
    try {
      const { rows } = await pipelinedQuery<{ value: string }>(client, [counting], readSetting);
      expect(rows).toEqual([{ value: '' }]);
    } finally {
      await client.query(`DROP TABLE ${table}`);
    }
  });
});
