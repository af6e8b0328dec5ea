import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { entitiesA, entitiesB, FleetFixture } from '../helpers/fleet.js';
import { type ServerProcess, startServerProcess } from '../helpers/server-process.js';

/**
 * The embedded database belongs to one process: while `serve` holds it, `tenantry migrate`
 * runs the migration inside the server over its control socket, for the server's entities.
 */
describe('tenantry migrate while a server holds the embedded database', () => {
  const fleet = new FleetFixture('pglite');
  let server: ServerProcess | undefined;
  let configB: string;

  beforeAll(async () => {
    await fleet.start();
    const configA = fleet.writeConfig('a', entitiesA());
    configB = fleet.writeConfig('b', entitiesB());
    // Only init-db and serve create the embedded database.
    expect((await fleet.cli(['init-db'], configA)).code).toBe(0);
    await fleet.createTenant(configA, 'schema-one', 'schema');
    server = await startServerProcess({ ...fleet.env, TENANTRY_CONFIG: configB });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await fleet.close();
  });

  it('refuses when the caller declares other entities than the server', async () => {
    const other = entitiesB();
    other.projects!.fields.budget = { type: 'number' };
    const result = await fleet.cli(['migrate'], fleet.writeConfig('other', other));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('the running server declares other entities than this config');
  });

  it('plans and migrates through the server', async () => {
    const plan = await fleet.cli(['migrate', '--plan'], configB);
    expect(plan.code, plan.stderr).toBe(0);
    expect(plan.stdout).toContain('1 schema tenant(s)');
    const result = await fleet.cli(['migrate', '--json'], configB);
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ targetVersion: 2, failed: [], remaining: 0 });
    const again = await fleet.cli(['migrate', '--json'], configB);
    expect(JSON.parse(again.stdout)).toMatchObject({ total: 0, upToDate: 1 });
  });
});
