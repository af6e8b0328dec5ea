import Type from 'typebox';
import { MigrateReportSchema, migrateReportView } from '../../isolation/migration-view.js';
import { migrateFleet } from '../../lifecycle/migrate-fleet.js';
import { defineOperation } from '../operation.js';
import { Flag } from '../refs.js';
import { EntitiesDigest, requireSameEntities } from './same-entities.js';

const Count = (description: string) => Type.Integer({ minimum: 1, description });

/**
 * No HTTP route: a migration is long work run by `tenantry migrate`, which sends it over the
 * control socket when a running server holds the embedded database.
 */
export const runMigrations = defineOperation({
  name: 'migrations.run',
  summary:
    'Bring every tenant’s tables to the declared entities; after a complete run, finish half-done tenants',
  access: { operator: true },
  input: Type.Object(
    {
      digest: Type.Optional(EntitiesDigest),
      concurrency: Type.Optional(Count('Tenants migrated at once (default 4)')),
      canary: Type.Optional(Count('Migrate this many tenants (after the shared tables) and stop')),
      lockTimeoutMs: Type.Optional(
        Count('How long one tenant’s DDL waits for a table lock before that tenant fails (default 10000)'),
      ),
      allowDestructive: Type.Optional(Flag),
      wait: Type.Optional(Flag),
    },
    { additionalProperties: false },
  ),
  output: MigrateReportSchema,
  audit: ['entities.migrate', 'tenant.repair', 'tenant.purge'],
  async run({ digest, ...options }, call) {
    requireSameEntities(call.engine, digest);
    return migrateReportView(await migrateFleet(call.engine, options, call.context));
  },
});
