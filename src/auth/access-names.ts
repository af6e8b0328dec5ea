import { isSqlState } from '../db/sqlstate.js';
import { TenantryError } from '../errors.js';

const ACCESS_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a reference to a user, role or group is an id (otherwise a name or an email). */
export function isUuid(ref: string): boolean {
  return UUID.test(ref);
}

/** A role or group name: lowercase a-z, 0-9 and "-", starting with a letter, at most 63. */
export function checkAccessName(name: string | undefined): string {
  if (typeof name !== 'string' || !ACCESS_NAME.test(name)) {
    throw new TenantryError(
      'validation_failed',
      'name must be lowercase a-z, 0-9 and "-", starting with a letter',
      {
        field: 'name',
      },
    );
  }
  return name;
}

/** Turns the unique violation of a name into 409 naming it; anything else goes on. */
export function nameTaken(kind: 'role' | 'group', name: string) {
  return (error: unknown): never => {
    if (isSqlState(error, 'UNIQUE_VIOLATION'))
      throw new TenantryError('conflict', `a ${kind} named ${name} exists already`, { field: 'name' });
    throw error;
  };
}
