import type { DestructiveChange, MigrationProblem } from '../entities/entity-migration.js';
import { TenantryError } from '../errors.js';

/** The declaration cannot be applied as it is (the CLI exits 2); nothing was changed. */
export class MigrationRefusedError extends TenantryError {
  constructor(
    readonly problems: readonly MigrationProblem[],
    readonly destructive: readonly DestructiveChange[],
  ) {
    const lines = [
      ...problems.map((problem) => problem.message),
      ...destructive.map((change) => `destructive: ${change.change}`),
    ];
    super(
      'validation_failed',
      `the declared entities cannot be migrated as they are:\n  ${lines.join('\n  ')}` +
        (problems.length === 0 ? '\nrerun with --allow-destructive to apply destructive changes' : ''),
      { field: 'entities' },
    );
    this.name = 'MigrationRefusedError';
  }
}

/** Another `tenantry migrate` holds the fleet lock. */
export class MigrationRunningError extends TenantryError {
  constructor() {
    super('conflict', 'another `tenantry migrate` is running on this database; wait for it, or pass --wait');
    this.name = 'MigrationRunningError';
  }
}
