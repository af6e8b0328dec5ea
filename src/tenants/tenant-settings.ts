import { Ajv, type ValidateFunction } from 'ajv';

const compiled = new WeakMap<object, ValidateFunction>();

/** The compiled validator of a settings JSON Schema (compiled once per schema object). */
export function settingsValidator(schema: Readonly<Record<string, unknown>>): ValidateFunction {
  let validate = compiled.get(schema);
  if (!validate) {
    validate = new Ajv({ allErrors: false, strict: false }).compile(schema as Record<string, unknown>);
    compiled.set(schema, validate);
  }
  return validate;
}

/** The first problem of `settings` against the schema, as a field path and a message. */
export function settingsProblem(
  schema: Readonly<Record<string, unknown>> | undefined,
  settings: Readonly<Record<string, unknown>>,
): { field: string; message: string } | undefined {
  if (!schema) return undefined;
  const validate = settingsValidator(schema);
  if (validate(settings)) return undefined;
  const error = validate.errors?.[0];
  const path = (error?.instancePath ?? '').split('/').filter(Boolean);
  const missing = error?.keyword === 'required' ? String(error.params.missingProperty) : undefined;
  const field = ['settings', ...path, ...(missing ? [missing] : [])].join('.');
  return { field, message: `${field} ${missing ? 'is required' : (error?.message ?? 'is not valid')}` };
}
