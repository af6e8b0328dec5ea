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
  const errors = Value.Errors(schema, value);
  const first = errors[0];
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
  const allowed =
    first.keyword === 'const' || first.keyword === 'enum' ? unionAt(schema, first.schemaPath) : undefined;
  return { path, message: allowed ?? first.message ?? 'is invalid', unknownKey: false };
}

/**
 * "must be one of ..." for the union of constants whose branch `schemaPath` names, read from the
 * schema: TypeBox stops reporting after a few errors, so its list of failed branches may be cut.
 */
function unionAt(root: TSchema, schemaPath: string): string | undefined {
  const segments = schemaPath
    .replace(/^#\/?/, '')
    .split('/')
    .filter((segment) => segment !== '')
    .map((segment) => segment.replaceAll('~1', '/').replaceAll('~0', '~'));
  // The outermost union at the value: the branch's `anyOf/<n>` pairs removed.
  while (segments.length >= 2 && segments.at(-2) === 'anyOf' && /^\d+$/.test(segments.at(-1)!)) {
    segments.length -= 2;
  }
  let schema: unknown = root;
  for (const segment of segments) {
    if (typeof schema !== 'object' || schema === null) return undefined;
    schema = (schema as Record<string, unknown>)[segment];
  }
  const allowed = { values: new Set<unknown>(), nullable: false };
  return collectConstants(schema, allowed) ? describeAllowed(allowed.values, allowed.nullable) : undefined;
}

/** Adds the constants a schema allows; false when it allows anything else (null aside). */
function collectConstants(schema: unknown, into: { values: Set<unknown>; nullable: boolean }): boolean {
  if (typeof schema !== 'object' || schema === null) return false;
  const { anyOf, const: constant, enum: values, type } = schema as Record<string, unknown>;
  if (Array.isArray(anyOf)) return anyOf.every((branch) => collectConstants(branch, into));
  if (constant !== undefined) into.values.add(constant);
  else if (Array.isArray(values)) for (const value of values) into.values.add(value);
  else if (type === 'null') into.nullable = true;
  else return false;
  return true;
}

function describeAllowed(values: Iterable<unknown>, nullable: boolean): string {
  const list = [...values].map((value) => (typeof value === 'string' ? value : JSON.stringify(value)));
  const allowed = list.length === 1 ? `must be ${list[0]}` : `must be one of ${list.join(', ')}`;
  return nullable ? `${allowed}, or null` : allowed;
}

/** One error of Ajv (Fastify's validator), the parts read here. */
export interface SchemaErrorLike {
  readonly keyword?: string;
  readonly instancePath?: string;
  readonly params?: unknown;
}

/**
 * "must be one of a, b, c" when the first of Ajv's errors is a value outside a list of constants (a
 * union of literals compiles to anyOf/const, where each branch only says "must be equal to
 * constant"), or undefined when the value at that path may also be something else than those
 * constants or null. Ajv reports every failed branch of an anyOf.
 */
export function allowedValuesMessage(errors: readonly SchemaErrorLike[]): string | undefined {
  const first = errors[0];
  if (first?.keyword !== 'const' && first?.keyword !== 'enum') return undefined;
  const path = first.instancePath ?? '';
  const allowed = new Set<unknown>();
  let nullable = false;
  for (const error of errors) {
    if ((error.instancePath ?? '') !== path) continue;
    const params = (error.params ?? {}) as {
      allowedValue?: unknown;
      allowedValues?: unknown;
      type?: unknown;
    };
    if (error.keyword === 'const') allowed.add(params.allowedValue);
    else if (error.keyword === 'enum' && Array.isArray(params.allowedValues))
      for (const value of params.allowedValues) allowed.add(value);
    else if (error.keyword === 'type' && params.type === 'null') nullable = true;
    else if (error.keyword !== 'anyOf') return undefined;
  }
  return describeAllowed(allowed, nullable);
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
