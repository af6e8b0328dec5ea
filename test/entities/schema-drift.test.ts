import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SchemaDriftError } from '../../src/entities/entity-schema.js';
import { startServer } from '../../src/server.js';
import { Tenantry } from '../../src/tenantry.js';
import { type CreatedTenant, entitiesA, entitiesB, FleetFixture } from '../helpers/fleet.js';
import { DRIVERS } from '../helpers/harness.js';
import { spawnCliWithin } from '../helpers/spawn-within.js';

/**
 * The tables shared by many tenants (row-level and shared) record the entity version they were
 * built at. A server refuses to start when they no longer match it: someone changed them behind
 * the ledger's back, and serving would fail in ways no request could explain.
 */
describe.each(DRIVERS)('tables changed behind the entity ledger, on %s', (driver) => {
  const fleet = new FleetFixture(driver);
  let configA: string;
  let tenant: CreatedTenant;

  const openError = (path: string): Promise<unknown> =>
    Tenantry.open({ config: fleet.config(path), verifyEntities: true }).then(
      async (tenantry) => {
        await tenantry.close();
        return undefined;
      },
      (error: unknown) => error,
    );

  beforeAll(async () => {
    await fleet.start();
    configA = fleet.writeConfig('a', entitiesA());
    // Only init-db and serve create the embedded database.
    expect((await fleet.cli(['init-db'], configA)).code).toBe(0);
    tenant = await fleet.createTenant(configA, 'row-tenant', 'row');
  });
  afterAll(async () => {
    await fleet.close();
  });

  it('opens with the entities the tables were built from, and with newer ones (tenants behind are served)', async () => {
    expect(await openError(configA)).toBeUndefined();
    expect(await openError(fleet.writeConfig('b', entitiesB()))).toBeUndefined();
  });

  it('refuses to serve once the row-level tables differ from their recorded version, naming the difference', async () => {
    await fleet.sql('ALTER TABLE app.projects ADD COLUMN sneaky text');
    try {
      const error = await openError(configA);
      expect(error).toBeInstanceOf(SchemaDriftError);
      expect((error as SchemaDriftError).differences).toEqual([
        'schema app (entity version 1): table of "projects" has column "sneaky" that is not declared',
      ]);
      const result = await spawnCliWithin(
        ['serve', '--port', '0'],
        { ...fleet.env, TENANTRY_CONFIG: configA, LOG_LEVEL: 'warn' },
        30_000,
      );
      expect(result.timedOut, result.stderr).toBe(false);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toContain('has column "sneaky" that is not declared');
      expect(result.stderr).not.toContain('listening');
      // Operator commands still work, to repair.
      const list = await fleet.cli(['tenants', 'list', '--json'], configA);
      expect(list.code, list.stderr).toBe(0);
    } finally {
      await fleet.sql('ALTER TABLE app.projects DROP COLUMN sneaky');
    }
  });

  it('refuses a shared table that lost a column', async () => {
    await fleet.sql('ALTER TABLE shared.countries DROP COLUMN code');
    try {
      const error = await openError(configA);
      expect(error).toBeInstanceOf(SchemaDriftError);
      expect((error as SchemaDriftError).differences).toEqual([
        'schema shared (entity version 1): entity "countries" field "code" is missing from the table',
      ]);
    } finally {
      await fleet.sql('ALTER TABLE shared.countries ADD COLUMN code text NOT NULL');
    }
  });

  it('serves again once the tables are restored', async () => {
    const server = await startServer({
      config: fleet.config(configA),
      notice: () => undefined,
      logger: false,
    });
    try {
      const created = await server.app.inject({
        method: 'POST',
        url: '/api/v1/projects',
        headers: { 'x-api-key': tenant.key },
        payload: { name: 'Restored' },
      });
      expect(created.statusCode, created.body).toBe(201);
    } finally {
      await server.close();
    }
  });
});
