import { parseInstant } from './calendar.js';
import { TenantryError } from './errors.js';
import type { ActionContext } from './runtime/actor.js';
import { countQuotaRefusal } from './runtime/quota.js';
import type { Tenantry } from './tenantry.js';

type Params = Readonly<Record<string, unknown>>;
type Operation = (tenantry: Tenantry, params: Params, context: ActionContext) => Promise<unknown>;

function text(params: Params, name: string): string {
  const value = params[name];
  if (typeof value !== 'string' || value.length === 0) {
    throw new TenantryError('validation_failed', `${name} is required`, { field: name });
  }
  return value;
}

function optionalText(params: Params, name: string): string | undefined {
  return params[name] === undefined ? undefined : text(params, name);
}

function optionalDate(params: Params, name: string): Date | undefined {
  const value = optionalText(params, name);
  if (value === undefined) return undefined;
  return parseInstant(value, name);
}

function optionalNumber(params: Params, name: string): number | undefined {
  const value = params[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'number')
    throw new TenantryError('validation_failed', `${name} must be a number`, { field: name });
  return value;
}

/**
 * A migration sent to a running server migrates to that server's entities: refuse when the
 * caller's config declares others, so nobody migrates to a declaration they did not mean.
 */
function sameEntities(tenantry: Tenantry, params: Params): void {
  if (params.digest !== undefined && params.digest !== tenantry.versions.digest) {
    throw new TenantryError(
      'conflict',
      'the running server declares other entities than this config: restart it with this config, then migrate',
    );
  }
}

/**
 * Every engine action the CLI offers, by name. The CLI runs them in-process, or sends them to
 * the running server over its control socket when the embedded database is open there: the same
 * function runs either way.
 */
export const operations = {
  'tenants.create': (t, p, c) => {
    const adminEmail = optionalText(p, 'adminEmail');
    return t.createTenant(p.input, c, adminEmail === undefined ? {} : { adminEmail });
  },
  'tenants.list': (t, p) =>
    t.tenants.list({
      includeInactive: p.includeInactive === true,
      includeDeleted: p.includeDeleted === true,
      ...(p.limit === undefined ? {} : { limit: optionalNumber(p, 'limit') }),
      ...(p.after === undefined ? {} : { after: text(p, 'after') }),
    }),
  'tenants.show': (t, p) => t.tenants.get(text(p, 'idOrSlug'), { includeDeleted: true }),
  'tenants.update': (t, p, c) => t.tenants.update(text(p, 'idOrSlug'), p.input, c),
  'tenants.activate': (t, p, c) => t.tenants.activate(text(p, 'idOrSlug'), c),
  'tenants.deactivate': (t, p, c) => t.tenants.deactivate(text(p, 'idOrSlug'), c),
  'tenants.delete': (t, p, c) => t.tenants.delete(text(p, 'idOrSlug'), c, { purge: p.purge === true }),
  'tenants.repair': (t, p, c) => t.tenants.repair(text(p, 'idOrSlug'), c),
  'tenants.config.get': (t, p) => t.tenants.configOf(text(p, 'idOrSlug')),
  'tenants.config.change': (t, p, c) =>
    t.tenants.changeConfig(
      text(p, 'idOrSlug'),
      {
        ...(p.set === undefined ? {} : { set: p.set as Record<string, unknown> }),
        ...(p.unset === undefined ? {} : { unset: p.unset as string[] }),
      },
      c,
    ),
  'tenants.regenerateKey': (t, p, c) => t.tenants.regenerateApiKey(text(p, 'idOrSlug'), c),
  'tenants.hosts.add': (t, p, c) => t.tenants.addHost(text(p, 'idOrSlug'), { host: p.host }, c),
  'tenants.hosts.remove': (t, p, c) => t.tenants.removeHost(text(p, 'idOrSlug'), text(p, 'host'), c),
  'tenants.keys.list': (t, p) =>
    t.listKeys(text(p, 'idOrSlug'), { includeRevoked: p.includeRevoked === true }),
  'tenants.keys.create': (t, p, c) =>
    t.createApiKey(
      text(p, 'idOrSlug'),
      {
        ...(p.name === undefined ? {} : { name: p.name }),
        ...(p.expiresAt === undefined ? {} : { expiresAt: p.expiresAt }),
        ...(Array.isArray(p.permissions) && p.permissions.length > 0 ? { permissions: p.permissions } : {}),
      },
      c,
    ),
  'tenants.keys.revoke': (t, p, c) => t.tenants.revokeApiKey(text(p, 'idOrSlug'), text(p, 'keyId'), c),
  'users.create': async (t, p, c) => {
    const password = optionalText(p, 'password');
    if (p.globalAdmin === true) {
      return t.identity.users.createGlobalAdmin(c, { email: p.email, ...(password ? { password } : {}) });
    }
    const tenant = await t.tenants.get(text(p, 'tenant'));
    return t.identity.users.create(t.identity.operator(tenant.id, c), {
      email: text(p, 'email'),
      ...(password ? { password } : {}),
      ...(Array.isArray(p.roles) && p.roles.length > 0 ? { roles: p.roles as string[] } : {}),
    });
  },
  'users.list': async (t, p) => {
    if (p.tenant === undefined) return t.identity.users.listGlobalAdmins();
    return t.identity.users.list((await t.tenants.get(text(p, 'tenant'))).id);
  },
  'users.deactivate': async (t, p, c) => {
    const tenant = await t.tenants.get(text(p, 'tenant'));
    const user = await t.identity.users.lookup(tenant.id, text(p, 'user'));
    return t.identity.users.update(t.identity.operator(tenant.id, c), user.id, { status: 'inactive' });
  },
  'users.resetPassword': async (t, p, c) => {
    const tenant = await t.tenants.get(text(p, 'tenant'));
    const user = await t.identity.users.lookup(tenant.id, text(p, 'user'));
    return t.identity.users.resetPassword(t.identity.operator(tenant.id, c), user.id);
  },
  'roles.list': async (t, p) => t.identity.roles.list((await t.tenants.get(text(p, 'tenant'))).id),
  'clients.create': async (t, p, c) => {
    const tenant = p.tenant === undefined ? undefined : await t.tenants.get(text(p, 'tenant'));
    return t.identity.clients.createForOperator(tenant?.id ?? null, { name: text(p, 'name') }, c);
  },
  'clients.list': async (t, p) => {
    if (p.tenant === undefined) return t.identity.clients.listAll({ orphaned: p.orphaned === true });
    return t.identity.clients.list((await t.tenants.get(text(p, 'tenant'))).id);
  },
  'clients.revoke': async (t, p, c) => {
    const tenant = await t.tenants.get(text(p, 'tenant'));
    await t.identity.clients.revoke(t.identity.operator(tenant.id, c), text(p, 'id'));
    return { revoked: p.id };
  },
  'servers.list': (t) => t.servers.list(),
  'servers.add': (t, p, c) =>
    t.servers.add({ name: text(p, 'name'), url: text(p, 'url'), adminUrl: optionalText(p, 'adminUrl') }, c),
  'servers.remove': (t, p, c) => t.servers.remove(text(p, 'name'), c).then(() => ({ removed: p.name })),
  'entities.plan': (t, p) => {
    sameEntities(t, p);
    return t.fleet.plan();
  },
  'entities.migrate': (t, p, c) => {
    sameEntities(t, p);
    return t.migrate(
      {
        ...(p.concurrency === undefined ? {} : { concurrency: optionalNumber(p, 'concurrency') }),
        ...(p.canary === undefined ? {} : { canary: optionalNumber(p, 'canary') }),
        ...(p.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: optionalNumber(p, 'lockTimeoutMs') }),
        allowDestructive: p.allowDestructive === true,
        wait: p.wait === true,
      },
      c,
    );
  },
  'audit.list': (t, p) =>
    t.audit({
      tenant: optionalText(p, 'tenant'),
      action: optionalText(p, 'action'),
      actor: optionalText(p, 'actor'),
      limit: optionalNumber(p, 'limit'),
      before: optionalText(p, 'before'),
      since: optionalDate(p, 'since'),
      until: optionalDate(p, 'until'),
    }),
} satisfies Record<string, Operation>;

export type OperationName = keyof typeof operations;

export function isOperationName(name: unknown): name is OperationName {
  return typeof name === 'string' && Object.hasOwn(operations, name);
}

/** Runs an operation and returns its result as plain JSON (what the control socket would send). */
export async function runOperation(
  tenantry: Tenantry,
  name: OperationName,
  params: Params,
  context: ActionContext,
): Promise<unknown> {
  try {
    const result = await operations[name](tenantry, params, context);
    return JSON.parse(JSON.stringify(result ?? null));
  } catch (error) {
    countQuotaRefusal(tenantry.metrics, error);
    throw error;
  }
}
