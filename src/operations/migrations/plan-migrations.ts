import Type from 'typebox';
import { MigrationPlanSchema, migrationPlanView } from '../../isolation/migration-view.js';
import { defineOperation } from '../operation.js';
import { EntitiesDigest, requireSameEntities } from './same-entities.js';

export const planMigrations = defineOperation({
  name: 'migrations.plan',
  summary: 'What `tenantry migrate` would change, per entity version, with its SQL per isolation level',
  access: { operator: true },
  input: Type.Object({ digest: Type.Optional(EntitiesDigest) }, { additionalProperties: false }),
  output: MigrationPlanSchema,
  http: [{ method: 'GET', path: '/admin/migrations/plan', scope: 'admin', query: ['digest'] }],
  async run({ digest }, { engine }) {
    requireSameEntities(engine, digest);
    return migrationPlanView(await engine.fleet.plan());
  },
});
