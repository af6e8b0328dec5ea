import type { Static, TSchema } from 'typebox';
import { Compile, type Validator } from 'typebox/compile';
import Value from 'typebox/value';
import { TenantryError } from './errors.js';

export interface SchemaProblem {
  /** Path segments of the offending value (`['server', 'port']`); empty for the root. */
  readonly path: readonly string[];
  readonly message: string;
  readonly unknownKey: boolean;
}

/** The first problem of `value` against `schema`, in words a user can act on, or undefined. */
export function firstSchemaProblem(schema: TSchema, value: unknown): SchemaProblem | undefined {
  const first = Value.Errors(schema, value)[0];
  if (!first) return undefined;
  const path = first.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replaceAll('~1', '/').replaceAll('~0', '~'));
  const params = first.params as { additionalProperties?: string[]; requiredProperties?: string[] };
  // TypeBox reports an extra property either as `additionalProperties` on the object or as a
  // `false` schema on the property itself.
  if (first.keyword === 'boolean' && first.schemaPath.endsWith('/additionalProperties')) {
    return { path, message: 'is not a known field', unknownKey: true };
  }
  if (first.keyword === 'additionalProperties' && params.additionalProperties?.[0] !== undefined) {
    return {
      path: [...path, params.additionalProperties[0]],
      message: 'is not a known field',
      unknownKey: true,
    };
  }
  if (first.keyword === 'required' && params.requiredProperties?.[0] !== undefined) {
    return { path: [...path, params.requiredProperties[0]], message: 'is required', unknownKey: false };
  }
  return { path, message: first.message ?? 'is invalid', unknownKey: false };
}

const validators = new WeakMap<TSchema, Validator>();

/** The schema's compiled check, built on first use: valid input never runs the error walk. */
function validatorOf(schema: TSchema): Validator {
  let validator = validators.get(schema);
  if (!validator) {
    validator = Compile(schema);
    validators.set(schema, validator);
  }
  return validator;
}

/** Checks `value` against a schema; the first problem becomes a validation_failed error naming the field. */
export function validate<S extends TSchema>(schema: S, value: unknown): Static<S> {
  if (validatorOf(schema).Check(value)) return value as Static<S>;
  // Refused by the compiled check: the interpreted walk names the problem (and should it find
  // none, the value is still refused).
  const problem = firstSchemaProblem(schema, value) ?? { path: [], message: 'is invalid', unknownKey: false };
  const field = problem.path.join('/') || '(body)';
  const message = problem.unknownKey ? `unknown field "${field}"` : `${field} ${problem.message}`;
  throw new TenantryError('validation_failed', message, { field });
}

/**
 * Nesting deeper than this is refused: no declared field needs it, and serializing a value nested
 * thousands of levels deep overflows the stack (a 9 KB body made a 500, and a stored setting
 * broke its tenant's config route for good).
 */
export const MAX_JSON_DEPTH = 64;

/** A UTF-16 surrogate without its other half: valid in a JavaScript string, refused by jsonb. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * Refuses a JSON value (a request body, a json field, settings) that nests beyond MAX_JSON_DEPTH
 * or holds a string (value or member name) that is not well-formed Unicode (`"\ud800"` parses,
 * then PostgreSQL refuses it, possibly after another write of the same request went in).
 */
export function assertJsonValue(value: unknown, field: string, name = field): void {
  const problem = jsonValueProblem(value, 0);
  if (problem === 'deep') {
    throw new TenantryError('validation_failed', `${name} nests deeper than ${MAX_JSON_DEPTH} levels`, {
      field,
    });
  }
  if (problem === 'malformed') {
    throw new TenantryError('validation_failed', `${name} holds a string that is not valid Unicode`, {
      field,
    });
  }
}

function jsonValueProblem(value: unknown, depth: number): 'deep' | 'malformed' | undefined {
  if (typeof value === 'string') return LONE_SURROGATE.test(value) ? 'malformed' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_JSON_DEPTH) return 'deep';
  for (const [key, item] of Object.entries(value)) {
    if (LONE_SURROGATE.test(key)) return 'malformed';
    const problem = jsonValueProblem(item, depth + 1);
    if (problem) return problem;
  }
  return undefined;
}
