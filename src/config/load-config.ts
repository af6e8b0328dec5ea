import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import YAML from 'yaml';
import { DEFAULT_STATEMENT_CACHE_SIZE } from '../db/database.js';
import { normaliseEntities } from '../entities/entity-config.js';
import { ConfigError } from '../errors.js';
import { normalizeHost } from '../tenants/host.js';
import { planSettingsProblem, settingsValidator } from '../tenants/tenant-settings.js';
import { firstSchemaProblem } from '../validation.js';
import {
  type ConfigFile,
  ConfigFileSchema,
  MIN_KEY_ITERATIONS,
  type TenantryConfig,
  type TrustProxy,
} from './config-schema.js';
import { normaliseStaticTenants } from './static-tenants.js';

const DEFAULT_FILES = ['tenantry.config.yaml', 'tenantry.config.yml', 'tenantry.config.json'];
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const MIN_ADMIN_TOKEN_LENGTH = 24;

export type Environment = Readonly<Record<string, string | undefined>>;

export interface LoadConfigOptions {
  /** Path of the config file; otherwise TENANTRY_CONFIG, otherwise the default names in `cwd`. */
  readonly file?: string;
  readonly env?: Environment;
  readonly cwd?: string;
  /** Values that win over the file and the environment (command-line flags). */
  readonly overrides?: { readonly port?: number };
  /** Use defaults and the environment only (embedding, tests). */
  readonly ignoreConfigFile?: boolean;
}

function findConfigFile(options: LoadConfigOptions, env: Environment, cwd: string): string | undefined {
  const explicit = options.file ?? env.TENANTRY_CONFIG;
  if (explicit !== undefined && explicit !== '') {
    const path = resolve(cwd, explicit);
    if (!existsSync(path)) {
      // Named as it was given: the CLI's --config (the library's `file`) or the environment.
      throw new ConfigError(
        options.file !== undefined ? '--config' : 'TENANTRY_CONFIG',
        `config file ${path} does not exist`,
      );
    }
    return path;
  }
  return DEFAULT_FILES.map((name) => resolve(cwd, name)).find((path) => existsSync(path));
}

function parseConfigText(path: string, text: string): unknown {
  try {
    if (path.endsWith('.json')) return JSON.parse(text);
    return YAML.parse(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (error) {
    const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
    throw new ConfigError(path, `cannot be parsed: ${reason}`);
  }
}

/** Validates a parsed config file; throws ConfigError naming the first offending key. */
export function validateConfigFile(raw: unknown): ConfigFile {
  const value = raw ?? {};
  const problem = firstSchemaProblem(ConfigFileSchema, value);
  if (problem) {
    const key = problem.path.join('.') || '(root)';
    throw new ConfigError(key, problem.unknownKey ? 'is not a known setting' : problem.message);
  }
  return value as ConfigFile;
}

/** Addresses and networks of trusted proxies, as proxy-addr (Fastify's) reads them. */
function checkTrustProxy(value: TrustProxy): TrustProxy {
  if (typeof value !== 'object') return value;
  for (const [index, entry] of value.entries()) {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const named = ['loopback', 'linklocal', 'uniquelocal'].includes(entry);
    const prefixOk =
      bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
    if (!named && (family === 0 || !prefixOk || extra !== undefined)) {
      throw new ConfigError(
        `server.trustProxy/${index}`,
        'must be an IP address, a network (10.0.0.0/8) or loopback, linklocal, uniquelocal',
      );
    }
  }
  return value;
}

function integerFromEnv(env: Environment, name: string, min: number, max: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  // The same message for "-1", "abc" and "99999999": each is refused for not being in the range.
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new ConfigError(name, `must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

/**
 * A connection string from the environment variable, else from the file's key, with the one it
 * came from: errors name it, here and when the database cannot be reached.
 */
function urlFromEnv<const Name extends string, const Key extends string>(
  env: Environment,
  name: Name,
  fileKey: Key,
  fallback: string | undefined,
): { value: string | undefined; source: Name | Key | undefined } {
  const value = env[name] || fallback;
  if (value === undefined) return { value: undefined, source: undefined };
  const source = env[name] ? name : fileKey;
  if (!/^postgres(ql)?:\/\//.test(value)) {
    throw new ConfigError(source, 'must be a postgres:// or postgresql:// connection string');
  }
  return { value, source };
}

function cacheStore(
  configured: 'memory' | 'redis' | undefined,
  redisUrl: string | undefined,
): 'memory' | 'redis' {
  if (configured === 'redis' && redisUrl === undefined) {
    throw new ConfigError('cache.store', 'is redis, but REDIS_URL is not set');
  }
  return configured ?? (redisUrl === undefined ? 'memory' : 'redis');
}

function redisUrlFromEnv(env: Environment): string | undefined {
  const value = env.REDIS_URL || undefined;
  if (value !== undefined && !/^rediss?:\/\//.test(value)) {
    throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL');
  }
  return value;
}

export function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Reads the config file and the environment into one frozen, validated configuration. */
export function loadConfig(options: LoadConfigOptions = {}): TenantryConfig {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  const path = options.ignoreConfigFile ? undefined : findConfigFile(options, env, cwd);
  const file = path
    ? validateConfigFile(parseConfigText(path, readFileSync(path, 'utf8')))
    : validateConfigFile({});
  const baseDomain = baseDomainOf(file);
  const adminToken = adminTokenFromEnv(env);
  const logLevel = logLevelFromEnv(env);
  const urls = databaseUrls(env, file);
  const tenancy = tenancyOf(file, baseDomain, urls.url);
  const dataDir = resolve(cwd, env.TENANTRY_DATA_DIR || file.dataDir || './tenantry-data');
  const config: TenantryConfig = {
    source: path,
    server: serverSection(file, env, options, baseDomain),
    database: databaseSection(file, urls),
    dataDir,
    adminToken,
    apiKeys: {
      iterations: file.apiKeys?.iterations ?? MIN_KEY_ITERATIONS,
      cacheSize: file.apiKeys?.cacheSize ?? 20_000,
      cacheTtlSeconds: file.apiKeys?.cacheTtlSeconds ?? 300,
    },
    tenancy: {
      reservedSlugs: tenancy.reservedSlugs,
      defaultIsolation: file.tenancy?.defaultIsolation ?? 'row',
      statementTimeoutMs: file.tenancy?.statementTimeoutMs ?? 5_000,
      defaultPlan: file.tenancy?.defaultPlan,
      cacheSize: file.tenancy?.cacheSize ?? 20_000,
    },
    entities: normaliseEntities(file.entities),
    plans: tenancy.plans,
    settingsSchema: tenancy.settingsSchema,
    tenants: tenancy.tenants,
    logLevel,
    metrics: {
      tenantLabels: file.metrics?.tenantLabels ?? 50,
      public: file.metrics?.public ?? false,
    },
    logRetentionDays: integerFromEnv(env, 'LOG_RETENTION_DAYS', 1, 36_500) ?? 90,
    backups: {
      directory: resolve(cwd, file.backups?.directory ?? join(dataDir, 'backups')),
      scheduleMs: file.backups?.schedule === undefined ? undefined : durationMs(file.backups.schedule),
      keep: file.backups?.keep ?? 7,
      exportsPerHour: file.backups?.exportsPerHour ?? 6,
      exportRetentionHours: file.backups?.exportRetentionHours ?? 168,
    },
    moves: {
      graceSeconds: file.moves?.graceSeconds ?? 600,
      maxFreezeMs: file.moves?.maxFreezeMs ?? 2_000,
    },
    redisUrl: redisUrlFromEnv(env),
    cache: cacheSection(file, env),
    auth: authSection(file),
    rateLimits: {
      keyFailuresPerMinute: file.rateLimits?.keyFailuresPerMinute ?? 20,
      keyFailureBlockSeconds: file.rateLimits?.keyFailureBlockSeconds ?? 300,
      concurrencyLeaseSeconds: file.rateLimits?.concurrencyLeaseSeconds ?? 60,
      redisPrefix: file.rateLimits?.redisPrefix ?? 'tenantry:',
    },
  };
  return deepFreeze(config);
}

/** `30m`, `6h`, `1d` in milliseconds (the schema checked the form). */
function durationMs(text: string): number {
  const unit = { m: 60_000, h: 3_600_000, d: 86_400_000 }[text.at(-1) as 'm' | 'h' | 'd'];
  return Number(text.slice(0, -1)) * unit;
}

function baseDomainOf(file: ConfigFile): string {
  const baseDomain = normalizeHost(file.server?.baseDomain ?? 'localhost');
  if (!baseDomain.ok) throw new ConfigError('server.baseDomain', baseDomain.message);
  return baseDomain.host;
}

function adminTokenFromEnv(env: Environment): string | undefined {
  const adminToken = env.TENANTRY_ADMIN_TOKEN || undefined;
  if (adminToken !== undefined && adminToken.length < MIN_ADMIN_TOKEN_LENGTH) {
    throw new ConfigError('TENANTRY_ADMIN_TOKEN', `must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters`);
  }
  return adminToken;
}

function logLevelFromEnv(env: Environment): string {
  const logLevel = env.LOG_LEVEL || 'info';
  if (!LOG_LEVELS.includes(logLevel))
    throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  return logLevel;
}

type DatabaseUrls = Pick<TenantryConfig['database'], 'url' | 'adminUrl' | 'urlSource' | 'adminUrlSource'>;

function databaseUrls(env: Environment, file: ConfigFile): DatabaseUrls {
  const url = urlFromEnv(env, 'DATABASE_URL', 'database.url', file.database?.url);
  const adminUrl = urlFromEnv(env, 'DATABASE_ADMIN_URL', 'database.adminUrl', file.database?.adminUrl);
  if (adminUrl.source !== undefined && url.value === undefined) {
    throw new ConfigError(
      adminUrl.source,
      'needs DATABASE_URL or database.url as well (the runtime connection)',
    );
  }
  return {
    url: url.value,
    adminUrl: adminUrl.value,
    urlSource: url.source,
    adminUrlSource: adminUrl.source,
  };
}

/** Reserved slugs, plans, the settings schema, and the tenants the file declares, which must fit all three. */
function tenancyOf(
  file: ConfigFile,
  baseDomain: string,
  url: string | undefined,
): Pick<TenantryConfig, 'plans' | 'settingsSchema' | 'tenants'> & { readonly reservedSlugs: string[] } {
  const reservedSlugs = (file.tenancy?.reservedSlugs ?? []).map((slug) => slug.toLowerCase());
  const defaultPlan = file.tenancy?.defaultPlan;
  if (defaultPlan !== undefined && !Object.hasOwn(file.plans ?? {}, defaultPlan)) {
    throw new ConfigError('tenancy.defaultPlan', `names no plan in plans (${defaultPlan})`);
  }
  const plans = file.plans ?? {};
  const settingsSchema = checkSettingsSchema(file.settingsSchema);
  checkPlanSettings(plans, settingsSchema);
  const tenants = normaliseStaticTenants(file.tenants, {
    plans,
    defaultPlan,
    reservedSlugs,
    baseDomain,
    settingsSchema,
    embedded: url === undefined,
  });
  return { reservedSlugs, plans, settingsSchema, tenants };
}

function serverSection(
  file: ConfigFile,
  env: Environment,
  options: LoadConfigOptions,
  baseDomain: string,
): TenantryConfig['server'] {
  return {
    port: options.overrides?.port ?? integerFromEnv(env, 'PORT', 0, 65535) ?? file.server?.port ?? 3000,
    host: file.server?.host ?? '0.0.0.0',
    trustProxy: checkTrustProxy(file.server?.trustProxy ?? false),
    baseDomain,
    bodyLimitBytes: file.server?.bodyLimitBytes ?? 1024 * 1024,
    shutdownGraceMs: file.server?.shutdownGraceMs ?? 10_000,
  };
}

function databaseSection(file: ConfigFile, urls: DatabaseUrls): TenantryConfig['database'] {
  const maxTenantConnections = file.database?.maxTenantConnections ?? 50;
  const connectionsPerTenantDatabase = file.database?.connectionsPerTenantDatabase ?? 2;
  if (connectionsPerTenantDatabase > maxTenantConnections) {
    throw new ConfigError(
      'database.connectionsPerTenantDatabase',
      `is ${connectionsPerTenantDatabase}, more than database.maxTenantConnections (${maxTenantConnections}), the bound across all tenant databases`,
    );
  }
  return {
    ...urls,
    maxConnections: file.database?.maxConnections ?? 10,
    runtimeRole: file.database?.runtimeRole ?? 'tenantry_runtime',
    maxTenantConnections,
    connectionsPerTenantDatabase,
    templates: file.database?.templates ?? true,
    statementCacheSize: file.database?.statementCacheSize ?? DEFAULT_STATEMENT_CACHE_SIZE,
  };
}

function cacheSection(file: ConfigFile, env: Environment): TenantryConfig['cache'] {
  return {
    store: cacheStore(file.cache?.store, redisUrlFromEnv(env)),
    defaultTtlSeconds: file.cache?.defaultTtlSeconds ?? 300,
    maxEntries: file.cache?.maxEntries ?? 10_000,
    maxBytes: Math.round((file.cache?.maxMegabytes ?? 64) * 1024 * 1024),
    maxTenantShare: file.cache?.maxTenantShare ?? 0.25,
  };
}

function authSection(file: ConfigFile): TenantryConfig['auth'] {
  return {
    adminToken: file.auth?.adminToken ?? true,
    sessionTtlSeconds: Math.round((file.auth?.sessionTtlHours ?? 12) * 3600),
    loginFailuresPerAccount: file.auth?.loginFailuresPerAccount ?? 5,
    loginLockSeconds: Math.round((file.auth?.loginLockMinutes ?? 15) * 60),
    loginFailuresPerAddress: file.auth?.loginFailuresPerAddress ?? 20,
    secureCookie: file.auth?.secureCookie ?? true,
  };
}

function checkSettingsSchema(
  schema: Record<string, unknown> | undefined,
): Record<string, unknown> | undefined {
  if (schema === undefined) return undefined;
  try {
    settingsValidator(schema);
  } catch (error) {
    throw new ConfigError(
      'settingsSchema',
      `is not a valid JSON Schema: ${error instanceof Error ? error.message : error}`,
    );
  }
  return schema;
}

/** A plan whose settings do not fit the schema stops the config, naming the plan's value. */
function checkPlanSettings(
  plans: Readonly<Record<string, { readonly settings?: Readonly<Record<string, unknown>> }>>,
  schema: Record<string, unknown> | undefined,
): void {
  const problem = planSettingsProblem(plans, schema);
  if (problem) throw new ConfigError(problem.key, problem.message);
}

/** A configuration for tests and embedding: defaults, with the given parts replaced. */
export function defineConfig(overrides: DeepPartial<TenantryConfig> = {}): TenantryConfig {
  const base = loadConfig({ env: {}, cwd: process.cwd(), ignoreConfigFile: true });
  const merged = merge(structuredClone(base) as unknown as Record<string, unknown>, overrides);
  return deepFreeze(merged as unknown as TenantryConfig);
}

type DeepPartial<T> = {
  -readonly [K in keyof T]?: T[K] extends readonly unknown[]
    ? T[K]
    : T[K] extends object
      ? DeepPartial<T[K]>
      : T[K];
};

function merge(target: Record<string, unknown>, source: object): Record<string, unknown> {
  for (const [key, value] of Object.entries(source)) {
    const current = target[key];
    if (
      value &&
      typeof value === 'object' &&
      !Array.isArray(value) &&
      current &&
      typeof current === 'object'
    ) {
      merge(current as Record<string, unknown>, value);
    } else if (value !== undefined) {
      target[key] = value;
    }
  }
  return target;
}
