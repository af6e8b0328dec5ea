import { Ajv, type ValidateFunction } from 'ajv';
import type { Queryable } from '../db/database.js';
import { ConfigError } from '../errors.js';
import { effectiveConfig, type Plans, type TenantConfig } from './tenant.js';

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

/**
 * A plan's settings are every one of its tenants' defaults: a value of the wrong type there would
 * make each of them invalid. (A property the schema requires may be left to the tenants.) The
 * first such value, as the config key that holds it and what is wrong with it.
 */
export function planSettingsProblem(
  plans: Readonly<Record<string, { readonly settings?: Readonly<Record<string, unknown>> }>>,
  schema: Readonly<Record<string, unknown>> | undefined,
): { key: string; message: string } | undefined {
  if (schema === undefined) return undefined;
  // Every error, not the first only: a missing required property may come before a wrong type.
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema as Record<string, unknown>);
  for (const [name, plan] of Object.entries(plans)) {
    if (plan.settings === undefined || validate(plan.settings)) continue;
    const problem = validate.errors?.find((error) => error.keyword !== 'required');
    if (!problem) continue;
    const path = problem.instancePath.split('/').filter(Boolean).join('.');
    return {
      key: `plans.${name}.settings${path ? `.${path}` : ''}`,
      message: `does not fit settingsSchema: ${problem.message ?? 'not valid'}`,
    };
  }
  return undefined;
}

/**
 * Refuses a settings schema (with its plans) that some tenant's effective settings do not fit,
 * naming the first such tenant: a reload must not leave tenants whose next config change fails.
 */
export async function assertTenantSettingsFit(
  db: Queryable,
  schema: Readonly<Record<string, unknown>> | undefined,
  plans: Plans,
): Promise<void> {
  if (!schema) return;
  const { rows } = await db.query<{ slug: string; config: TenantConfig }>(
    "SELECT slug, config FROM tenantry.tenants WHERE status <> 'deleted' ORDER BY slug",
  );
  for (const row of rows) {
    const problem = settingsProblem(schema, effectiveConfig(row.config, plans).settings);
    if (problem) {
      throw new ConfigError(
        'settingsSchema',
        `does not fit the settings of tenant ${row.slug}: ${problem.message}`,
      );
    }
  }
}
