import { isDeepStrictEqual } from 'node:util';
import type { TenantryConfig } from './config-schema.js';
import { deepFreeze } from './load-config.js';

/**
 * What a running process takes from a reloaded config file. Everything else (server, database,
 * data directory, entities, API-key hashing, metrics, rate-limit and Redis settings, the
 * environment) is read once at start: its components are built from it.
 */
export const RELOADABLE_KEYS = [
  'plans',
  'settingsSchema',
  'tenants',
  'tenancy.defaultPlan',
  'tenancy.defaultIsolation',
  'tenancy.reservedSlugs',
] as const;

export interface ConfigReloadPlan {
  /** The running config with the reloadable parts of the new one: a new frozen value. */
  readonly config: TenantryConfig;
  /** Reloadable keys whose value changed. */
  readonly changed: readonly string[];
  /** Keys whose value changed but that only a restart applies; the running values stay. */
  readonly restartRequired: readonly string[];
}

/** Compares a reloaded config with the running one, key by key. Pure: nothing is applied. */
export function planConfigReload(current: TenantryConfig, next: TenantryConfig): ConfigReloadPlan {
  const reloadable = new Set<string>(RELOADABLE_KEYS);
  const changed: string[] = [];
  const restartRequired: string[] = [];
  for (const key of changedKeys(current, next)) {
    if (reloadable.has(key)) changed.push(key);
    else restartRequired.push(key);
  }
  // Unchanged parts keep their identity: components that hold them see the same values.
  const merged: Record<string, unknown> = { ...current, source: next.source };
  const source = next as unknown as Record<string, unknown>;
  for (const key of changed) {
    const [head, tail] = key.split('.') as [string, string | undefined];
    merged[head] =
      tail === undefined
        ? source[head]
        : { ...(merged[head] as object), [tail]: (source[head] as Record<string, unknown>)[tail] };
  }
  return { config: deepFreeze(merged as unknown as TenantryConfig), changed, restartRequired };
}

/** Where a URL was read from names it in messages; the URL itself is the setting. */
const NOT_SETTINGS = new Set(['database.urlSource', 'database.adminUrlSource']);

/** Dotted keys whose values differ; objects are compared per key, arrays and entities as wholes. */
function changedKeys(current: TenantryConfig, next: TenantryConfig): string[] {
  const keys: string[] = [];
  const a = current as unknown as Record<string, unknown>;
  const b = next as unknown as Record<string, unknown>;
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    // Where the file was read from is not a setting: the reloaded file is the one in force.
    if (key === 'source') continue;
    const left = a[key];
    const right = b[key];
    if (isDeepStrictEqual(left, right)) continue;
    if (isSection(key, left) && isSection(key, right)) {
      for (const inner of new Set([...Object.keys(left), ...Object.keys(right)])) {
        if (NOT_SETTINGS.has(`${key}.${inner}`)) continue;
        if (!isDeepStrictEqual(left[inner], right[inner])) keys.push(`${key}.${inner}`);
      }
    } else {
      keys.push(key);
    }
  }
  return keys;
}

/** Settings groups (server, tenancy, ...) are compared key by key; plans and schemas as wholes. */
function isSection(key: string, value: unknown): value is Record<string, unknown> {
  const wholes = new Set(['plans', 'settingsSchema', 'tenants', 'entities']);
  return !wholes.has(key) && value !== null && typeof value === 'object' && !Array.isArray(value);
}
