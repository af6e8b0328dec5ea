import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pipelinedQuery, preparedName } from '../../src/db/pipelined-query.js';
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

  const ours = async () =>
    (
      await client.query<{ name: string }>(
        `SELECT name FROM pg_prepared_statements WHERE name LIKE 'tenantry\\_%' ORDER BY name`,
      )
    ).rows.map((row) => row.name);

  it('prepares the main statement under a name derived from its text, once per connection', async () => {
    const text = 'SELECT $1::int + 1 AS n';
    expect(preparedName(text)).toBe(preparedName(text));
    expect(preparedName(text)).not.toBe(preparedName('SELECT $1::int + 2 AS n'));
    const main = (n: number) => ({ text, values: [n], name: preparedName(text) });
    for (const n of [1, 2, 3]) {
      const { rows } = await pipelinedQuery<{ n: number }>(client, [setting('a')], main(n));
      expect(rows).toEqual([{ n: n + 1 }]);
    }
    expect(await ours()).toContain(preparedName(text));
    expect((await ours()).filter((name) => name === preparedName(text))).toHaveLength(1);
  });

  it('keeps at most `capacity` named statements, closing the least recently used', async () => {
    const fresh = new pg.Client(POSTGRES_SERVER_URL);
    await fresh.connect();
    try {
      const prepared = async () =>
        (
          await fresh.query<{ name: string }>(
            `SELECT name FROM pg_prepared_statements WHERE name LIKE 'tenantry\\_%'`,
          )
        ).rows.map((row) => row.name);
      const statement = (k: number) => {
        const text = `SELECT ${k}::int AS k, $1::text AS tag`;
        return { text, values: ['x'], name: preparedName(text) };
      };
      for (let k = 0; k < 6; k += 1) {
        const { rows } = await pipelinedQuery<{ k: number }>(fresh, [], statement(k), 3);
        expect(rows).toEqual([{ k, tag: 'x' }]);
      }
      // Reusing the most recent keeps it; the next pipeline closes what was pushed out.
      await pipelinedQuery(fresh, [], statement(5), 3);
      expect((await prepared()).sort()).toEqual([3, 4, 5].map((k) => statement(k).name).sort());
      // A closed one is parsed again when it comes back.
      const { rows } = await pipelinedQuery<{ k: number }>(fresh, [], statement(0), 3);
      expect(rows).toEqual([{ k: 0, tag: 'x' }]);
    } finally {
      await fresh.end();
    }
  });

  it('parses a prepared statement again when its table changed under it, and the request succeeds', async () => {
    const table = `tenantry_changing_${process.pid}`;
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.query(`CREATE TABLE ${table} (id int)`);
    try {
      await client.query(`INSERT INTO ${table} VALUES (1)`);
      const text = `SELECT * FROM ${table} WHERE id = $1`;
      const main = { text, values: [1], name: preparedName(text) };
      expect((await pipelinedQuery(client, [setting('a')], main)).rows).toEqual([{ id: 1 }]);
      expect((await pipelinedQuery(client, [setting('a')], main)).rows).toEqual([{ id: 1 }]);
      await client.query(`ALTER TABLE ${table} ADD COLUMN label text DEFAULT 'new'`);
      // PostgreSQL refuses the old plan ("cached plan must not change result type"); the
      // pipeline is sent again with the statement parsed anew.
      expect((await pipelinedQuery(client, [setting('b')], main)).rows).toEqual([{ id: 1, label: 'new' }]);
      expect((await pipelinedQuery(client, [setting('b')], main)).rows).toEqual([{ id: 1, label: 'new' }]);
    } finally {
      await client.query(`DROP TABLE ${table}`);
    }
  });

  it('describes a prepared statement once per connection and reads later rows with that description', async () => {
    const connection = (client as unknown as { connection: { describe: (...args: unknown[]) => void } })
      .connection;
    const describe = connection.describe;
    let described = 0;
    connection.describe = (...args: unknown[]) => {
      described += 1;
      describe.apply(connection, args);
    };
    try {
      const text = `SELECT $1::int AS n, now()::date::text AS day, '{"a":1}'::jsonb AS doc`;
      const main = (n: number) => ({ text, values: [n], name: preparedName(text) });
      for (const n of [1, 2, 3]) {
        const { rows, fields } = await pipelinedQuery<{ n: number; doc: unknown }>(
          client,
          [setting('a')],
          main(n),
        );
        expect(rows).toEqual([{ n, day: expect.any(String), doc: { a: 1 } }]);
        expect(fields.map((field) => field.name)).toEqual(['n', 'day', 'doc']);
      }
      expect(described).toBe(1);
      // An unnamed statement is described every time.
      await pipelinedQuery(client, [], { text: 'SELECT 1 AS one', values: [] });
      await pipelinedQuery(client, [], { text: 'SELECT 1 AS one', values: [] });
      expect(described).toBe(3);
    } finally {
      connection.describe = describe;
    }
  });

  it('reads rows with the new description once a column changed type under a prepared statement', async () => {
    const table = `tenantry_retyped_${process.pid}`;
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    await client.query(`CREATE TABLE ${table} (id int, amount int)`);
    try {
      await client.query(`INSERT INTO ${table} VALUES (1, 42)`);
      const text = `SELECT id, amount FROM ${table} WHERE id = $1`;
      const main = { text, values: [1], name: preparedName(text) };
      expect((await pipelinedQuery(client, [setting('a')], main)).rows).toEqual([{ id: 1, amount: 42 }]);
      expect((await pipelinedQuery(client, [setting('a')], main)).rows).toEqual([{ id: 1, amount: 42 }]);
      await client.query(`ALTER TABLE ${table} ALTER COLUMN amount TYPE jsonb USING to_jsonb(amount::text)`);
      // Read with the old description, the jsonb text '"42"' would stay a string with quotes.
      expect((await pipelinedQuery(client, [setting('b')], main)).rows).toEqual([{ id: 1, amount: '42' }]);
      expect((await pipelinedQuery(client, [setting('b')], main)).rows).toEqual([{ id: 1, amount: '42' }]);
    } finally {
      await client.query(`DROP TABLE ${table}`);
    }
  });

  it('parses again when other code deallocated the connection’s statements', async () => {
    const text = 'SELECT $1::int * 2 AS n';
    const main = { text, values: [21], name: preparedName(text) };
    expect((await pipelinedQuery(client, [setting('a')], main)).rows).toEqual([{ n: 42 }]);
    await client.query('DEALLOCATE ALL');
    expect((await pipelinedQuery(client, [setting('b')], main)).rows).toEqual([{ n: 42 }]);
    expect(await preparedCount('test_setting')).toBe(1);
  });
});
