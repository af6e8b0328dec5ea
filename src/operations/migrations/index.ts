import { planMigrations } from './plan-migrations.js';
import { runMigrations } from './run-migrations.js';

export const migrationOperations = [planMigrations, runMigrations] as const;
