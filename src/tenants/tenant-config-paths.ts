import { TenantryError } from '../errors.js';
import { CONFIG_SECTIONS, type EffectiveTenantConfig, type Tenant, type TenantConfig } from './tenant.js';
import { clip } from './tenant-store.js';

/** A tenant's configuration: its plan, what it overrides, and the effective result. */
export interface TenantConfigView {
  readonly plan: string | null;
  /** What is set on the tenant itself. */
  readonly overrides: TenantConfig;
  /** Its plan's values with its overrides on top. */
  readonly effective: EffectiveTenantConfig;
}

export function configView(tenant: Tenant): TenantConfigView {
  return { plan: tenant.effective.plan ?? null, overrides: tenant.config, effective: tenant.effective };
}

/** Names that reach an object's prototype instead of a key of its own when assigned. */
const OBJECT_MEMBERS = new Set(['__proto__', 'constructor', 'prototype']);
const SECTIONS: readonly string[] = CONFIG_SECTIONS;

/** `limits.requestsPerSecond` -> ['limits', 'requestsPerSecond'], refusing unknown sections. */
export function parseConfigPath(path: string): string[] {
  const parts = typeof path === 'string' ? path.split('.') : [];
  const [section] = parts;
  const valid =
    parts.length > 0 &&
    parts.every((part) => /^[A-Za-z0-9_-]{1,100}$/.test(part) && !OBJECT_MEMBERS.has(part)) &&
    section !== undefined &&
    SECTIONS.includes(section) &&
    (section === 'plan' || section === 'features'
      ? parts.length === 1
      : parts.length >= 2 || section === 'settings');
  if (!valid) {
    throw new TenantryError(
      'validation_failed',
      `"${clip(String(path))}" is not a config path: plan, features, limits.<name>, branding.<name> or settings[.<key>...]`,
      { field: 'path' },
    );
  }
  return parts;
}

/** A copy of `target` with the value at `path` set (or removed, for undefined); emptied objects go too. */
export function withPath(
  target: Record<string, unknown>,
  path: readonly string[],
  value: unknown,
): Record<string, unknown> {
  const [head, ...rest] = path as [string, ...string[]];
  const copy = { ...target };
  if (rest.length === 0) {
    if (value === undefined) delete copy[head];
    else copy[head] = value;
    return copy;
  }
  const child = copy[head];
  const nested = withPath(
    child && typeof child === 'object' && !Array.isArray(child) ? (child as Record<string, unknown>) : {},
    rest,
    value,
  );
  if (Object.keys(nested).length === 0) delete copy[head];
  else copy[head] = nested;
  return copy;
}

/** The value at a config path of an effective config, or undefined when nothing sets it. */
export function valueAtPath(target: unknown, path: readonly string[]): unknown {
  let value: unknown = target;
  for (const part of path) {
    if (!value || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** Settings whose name says they hold a secret: their values never reach the audit trail. */
const SECRET_NAME = /secret|password|passwd|token|api[-_]?key|private|credential/i;
const REDACTED = '(redacted)';

/** One value of a config that a change set, replaced or removed (`undefined`: absent). */
export interface ConfigValueChange {
  readonly path: string;
  readonly from: unknown;
  readonly to: unknown;
}

/**
 * What differs between two configs, value by value (objects are walked, arrays and scalars are
 * values), for the audit trail: a setting whose name looks like a secret is shown as changed, not
 * what it was or became.
 */
export function configChanges(
  before: unknown,
  after: unknown,
  path: readonly string[] = [],
): ConfigValueChange[] {
  const isObject = (value: unknown): value is Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value);
  // An object that appears or disappears is walked against nothing: each of its values is a change.
  const walk = (isObject(before) || before === undefined) && (isObject(after) || after === undefined);
  if (walk && (isObject(before) || isObject(after))) {
    const from = isObject(before) ? before : {};
    const to = isObject(after) ? after : {};
    const keys = [...new Set([...Object.keys(from), ...Object.keys(to)])].sort();
    return keys.flatMap((key) => configChanges(from[key], to[key], [...path, key]));
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  const secret = path.some((part) => SECRET_NAME.test(part));
  const shown = (value: unknown) => (value === undefined ? null : secret ? REDACTED : value);
  return [{ path: path.join('.'), from: shown(before), to: shown(after) }];
}
