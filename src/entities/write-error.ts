import { constraintOf, SqlState, sqlStateOf } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';
import type { Entity } from './entity.js';
import { uniqueConstraintName } from './entity-ddl.js';

/** Turns a database refusal into the answer a caller may see: the field, never the SQL or a value. */
export function translateWriteError(entity: Entity, error: unknown): unknown {
  const state = sqlStateOf(error);
  const constraint = constraintOf(error) ?? '';
  const fieldOfConstraint = entity.fields.find(
    (field) =>
      constraint === uniqueConstraintName(entity, field) ||
      constraint.startsWith(`${entity.name}_${field.name}_`),
  );
  const name = fieldOfConstraint?.name;
  if (state === SqlState.UNIQUE_VIOLATION) {
    return new TenantryError(
      'conflict',
      `${name ?? 'a unique field'} must be unique`,
      name ? { field: name } : {},
    );
  }
  if (state === SqlState.FOREIGN_KEY_VIOLATION) {
    if (constraint.startsWith(`${entity.name}_`) && name) {
      return new TenantryError(
        'validation_failed',
        `${name} does not name an existing ${fieldOfConstraint?.ref?.entity}`,
        {
          field: name,
        },
      );
    }
    return new TenantryError('conflict', `this ${entity.name} is still referenced by other rows`);
  }
  if (state === SqlState.CHECK_VIOLATION || state === SqlState.NOT_NULL_VIOLATION) {
    return new TenantryError(
      'validation_failed',
      `${name ?? 'a field'} is not valid`,
      name ? { field: name } : {},
    );
  }
  // Values PostgreSQL refuses and statement timeouts are answered where every error is
  // (src/http/problem.ts), whichever statement raised them.
  return error;
}
