import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { TenantryError } from '../errors.js';
import { TenantUsageSchema, tenantUsageView } from '../lifecycle/tenant-usage-view.js';
import { engineOf } from '../tenantry.js';
import type { Tenant } from '../tenants/tenant.js';
import { PublicTenantViewSchema, publicTenantView } from '../tenants/tenant-view.js';
import { ProblemSchema, Security } from './schemas.js';

const JSON_TYPE = 'application/json; charset=utf-8';
const serializedViews = new WeakMap<Tenant, string>();

function publicTenantJson(tenant: Tenant): string {
  let json = serializedViews.get(tenant);
  if (json === undefined) {
    json = JSON.stringify(publicTenantView(tenant));
    serializedViews.set(tenant, json);
  }
  return json;
}

/** Routes of the resolved tenant itself. Registered inside `tenantScope`. */
export function tenantRoutes(scope: FastifyInstance): void {
  const engine = engineOf(scope.tenantry);
  const schema = {
    tags: ['tenant'],
    summary: 'The tenant this request resolved to',
    description:
      '`?include=usage` adds its usage against its quotas (rows, storage, live API keys); it needs credentials (an API key or a session), as the host alone is not a secret.',
    // The host alone may ask: the empty requirement is anonymous access.
    security: [...Security.tenant, {}],
    response: {
      200: Type.Object({ ...PublicTenantViewSchema.properties, usage: Type.Optional(TenantUsageSchema) }),
      400: ProblemSchema,
      401: ProblemSchema,
      403: ProblemSchema,
      404: ProblemSchema,
    },
  };
  // The tenant hook has run: a request without a resolved tenant never reaches a handler here.
  // The query is read by hand rather than validated by a schema, and the default answer is the
  // tenant's view serialized once per tenant snapshot (a changed tenant is a new object): this
  // is the route every client's login page calls.
  const handler = (request: FastifyRequest, reply: FastifyReply) => {
    const include = (request.query as Record<string, unknown>).include;
    if (include === undefined) return reply.type(JSON_TYPE).send(publicTenantJson(request.tenant!));
    return withUsage(request, include);
  };
  const withUsage = async (request: FastifyRequest, include: unknown) => {
    if (include !== 'usage') {
      throw new TenantryError('validation_failed', 'include may only be "usage"', { field: 'include' });
    }
    if (request.actor?.kind === 'anonymous') {
      throw new TenantryError(
        'unauthenticated',
        'usage needs credentials: send an X-API-Key or a session token',
      );
    }
    const usage = await engine.usage.of(request.tenant!);
    return { ...publicTenantView(request.tenant!), usage: tenantUsageView(usage) };
  };
  scope.get('/tenant-info', { schema }, handler);
  scope.get('/tenants/current', { schema }, handler);
}
