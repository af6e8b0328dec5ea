import type { Static, TSchema } from 'typebox';
import Value from 'typebox/value';
import { TenantryError } from './errors.js';

function fieldOf(instancePath: string, params: object): string {
  const path = instancePath.replace(/^\//, '');
  const extra = (params as { additionalProperties?: string[] }).additionalProperties?.[0];
  const missing = (params as { requiredProperties?: string[] }).requiredProperties?.[0];
  const leaf = extra ?? missing;
  if (leaf === undefined) return path || '(body)';
  return path ? `${path}/${leaf}` : leaf;
}

/** Checks `value` against a schema; the first problem becomes a validation_failed error naming the field. */
export function validate<S extends TSchema>(schema: S, value: unknown): Static<S> {
  const first = Value.Errors(schema, value)[0];
  if (first) {
    const field = fieldOf(first.instancePath, first.params);
    const message =
      first.keyword === 'additionalProperties' ? `unknown field "${field}"` : `${field} ${first.message ?? 'is invalid'}`;
    throw new TenantryError('validation_failed', message, { field });
  }
  return value as Static<S>;
}
