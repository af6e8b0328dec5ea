import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { CreateApiKeyInputSchema } from '../auth/api-key-input.js';
import { parseInstant } from '../calendar.js';
import { TenantryError } from '../errors.js';
import type { Tenantry } from '../tenantry.js';
import {
  type Tenant,
  TenantBrandingSchema,
  type TenantConfig,
  TenantConfigSchema,
  TenantLimitsSchema,
} from '../tenants/tenant.js';
import {
  CreateTenantInputSchema,
  HostInputSchema,
  ReplaceTenantInputSchema,
  UpdateTenantInputSchema,
} from '../tenants/tenant-input.js';
import { actionContext } from './request-context.js';
import {
  AdminTenantSchema,
  ApiKeyInfoSchema,
  AuditEntrySchema,
  BooleanQuery,
  IdOrSlugParams,
  IssuedKeySchema,
  problemResponses,
} from './schemas.js';
import { presentUsage, TenantUsageSchema } from './usage-view.js';

const tags = ['admin'];
const security = [{ adminToken: [] }];

function adminView(tenant: Tenant) {
  return {
    id: tenant.id,
    name: tenant.name,
    slug: tenant.slug,
    status: tenant.status,
    isolation: tenant.isolation,
    hosts: [...tenant.hosts],
    config: tenant.config as TenantConfig,
    schemaVersion: tenant.schemaVersion,
    server: tenant.server,
    createdAt: tenant.createdAt.toISOString(),
    updatedAt: tenant.updatedAt.toISOString(),
  };
}

function parseDate(value: string | undefined, field: string): Date | undefined {
  return value === undefined ? undefined : parseInstant(value, field);
}

function parseLimit(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,4}$/.test(value))
    throw new TenantryError('validation_failed', 'limit must be an integer', { field: 'limit' });
  return Number(value);
}

/** Operator routes under /admin. Registered inside `adminScope`. */
export function adminRoutes(tenantry: Tenantry) {
  return (base: FastifyInstance): void => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();
    const tenantResponse = { 200: AdminTenantSchema, ...problemResponses };

    app.post(
      '/admin/tenants',
      {
        schema: {
          tags,
          security,
          summary: 'Create a tenant and its first API key (with adminEmail, its first administrator too)',
          body: Type.Object(
            {
              ...CreateTenantInputSchema.properties,
              adminEmail: Type.Optional(Type.String({ minLength: 3, maxLength: 254 })),
            },
            { additionalProperties: false },
          ),
          response: {
            201: Type.Object({
              tenant: AdminTenantSchema,
              apiKey: IssuedKeySchema,
              admin: Type.Optional(
                Type.Object({
                  user: Type.Object({ id: Type.String(), email: Type.String() }),
                  setupToken: Type.Optional(Type.String()),
                  warning: Type.Optional(Type.String()),
                }),
              ),
            }),
            ...problemResponses,
          },
        },
      },
      async (request, reply) => {
        const { adminEmail, ...input } = request.body as { adminEmail?: string };
        const created = await tenantry.createTenant(
          input,
          actionContext(request),
          adminEmail === undefined ? {} : { adminEmail },
        );
        reply.code(201).header('location', `/admin/tenants/${created.tenant.id}`);
        return {
          tenant: adminView(created.tenant),
          apiKey: created.apiKey,
          ...('admin' in created ? { admin: created.admin } : {}),
        };
      },
    );

    app.get(
      '/admin/tenants',
      {
        schema: {
          tags,
          security,
          summary: 'List tenants (active only unless asked)',
          querystring: Type.Object(
            {
              includeInactive: Type.Optional(BooleanQuery),
              includeDeleted: Type.Optional(BooleanQuery),
              limit: Type.Optional(Type.String({ maxLength: 5 })),
              after: Type.Optional(Type.String({ maxLength: 36 })),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              tenants: Type.Array(AdminTenantSchema),
              next: Type.Union([Type.String(), Type.Null()]),
            }),
            ...problemResponses,
          },
        },
      },
      async (request) => {
        const { includeInactive, includeDeleted, limit, after } = request.query;
        const page = await tenantry.tenants.list({
          includeInactive: includeInactive === 'true',
          includeDeleted: includeDeleted === 'true',
          ...(limit === undefined ? {} : { limit: parseLimit(limit) }),
          ...(after === undefined ? {} : { after }),
        });
        return { tenants: page.tenants.map(adminView), next: page.next };
      },
    );

    app.get(
      '/admin/tenants/:idOrSlug',
      {
        schema: {
          tags,
          security,
          summary: 'Show a tenant',
          params: IdOrSlugParams,
          response: tenantResponse,
        },
      },
      async (request) =>
        adminView(await tenantry.tenants.get(request.params.idOrSlug, { includeDeleted: true })),
    );

    app.put(
      '/admin/tenants/:idOrSlug',
      {
        schema: {
          tags,
          security,
          summary: 'Replace name, slug, hosts and config',
          params: IdOrSlugParams,
          body: ReplaceTenantInputSchema,
          response: tenantResponse,
        },
      },
      async (request) =>
        adminView(
          await tenantry.tenants.replace(request.params.idOrSlug, request.body, actionContext(request)),
        ),
    );

    app.patch(
      '/admin/tenants/:idOrSlug',
      {
        schema: {
          tags,
          security,
          summary: 'Change some of name, slug, hosts and config',
          params: IdOrSlugParams,
          body: UpdateTenantInputSchema,
          response: tenantResponse,
        },
      },
      async (request) =>
        adminView(
          await tenantry.tenants.update(request.params.idOrSlug, request.body, actionContext(request)),
        ),
    );

    app.delete(
      '/admin/tenants/:idOrSlug',
      {
        schema: {
          tags,
          security,
          summary:
            'Delete a tenant (soft: it stops resolving at once, its record stays); ?purge=true also removes its data, keys and record',
          params: IdOrSlugParams,
          querystring: Type.Object({ purge: Type.Optional(BooleanQuery) }, { additionalProperties: false }),
          response: tenantResponse,
        },
      },
      async (request) =>
        adminView(
          await tenantry.tenants.delete(request.params.idOrSlug, actionContext(request), {
            purge: request.query.purge === 'true',
          }),
        ),
    );

    const ConfigViewSchema = Type.Object({
      plan: Type.Union([Type.String(), Type.Null()]),
      overrides: TenantConfigSchema,
      effective: Type.Object({
        plan: Type.Optional(Type.String()),
        features: Type.Array(Type.String()),
        limits: TenantLimitsSchema,
        branding: TenantBrandingSchema,
        settings: Type.Record(Type.String(), Type.Unknown()),
      }),
    });
    const configView = (view: Awaited<ReturnType<Tenantry['tenants']['configOf']>>) => ({
      plan: view.plan,
      overrides: view.overrides as TenantConfig,
      effective: {
        ...(view.effective.plan === undefined ? {} : { plan: view.effective.plan }),
        features: [...view.effective.features],
        limits: { ...view.effective.limits },
        branding: { ...view.effective.branding },
        settings: { ...view.effective.settings },
      },
    });

    app.get(
      '/admin/tenants/:idOrSlug/usage',
      {
        schema: {
          tags,
          security,
          summary:
            "A tenant's usage against its limits, measured now: rows, storage (estimated for row tenants), live API keys",
          params: IdOrSlugParams,
          response: { 200: TenantUsageSchema, ...problemResponses },
        },
      },
      async (request) => presentUsage(await tenantry.usage(request.params.idOrSlug)),
    );

    app.get(
      '/admin/tenants/:idOrSlug/config',
      {
        schema: {
          tags,
          security,
          summary: "A tenant's configuration: its plan, its overrides and the effective result",
          params: IdOrSlugParams,
          response: { 200: ConfigViewSchema, ...problemResponses },
        },
      },
      async (request) => configView(await tenantry.tenants.configOf(request.params.idOrSlug)),
    );

    app.patch(
      '/admin/tenants/:idOrSlug/config',
      {
        schema: {
          tags,
          security,
          summary:
            'Set or unset configuration values by path (plan, features, limits.<name>, branding.<name>, settings.<key>...)',
          params: IdOrSlugParams,
          body: Type.Object(
            {
              set: Type.Optional(
                Type.Record(Type.String({ maxLength: 300 }), Type.Unknown(), { maxProperties: 100 }),
              ),
              unset: Type.Optional(Type.Array(Type.String({ maxLength: 300 }), { maxItems: 100 })),
            },
            { additionalProperties: false },
          ),
          response: { 200: ConfigViewSchema, ...problemResponses },
        },
      },
      async (request) =>
        configView(
          await tenantry.tenants.changeConfig(request.params.idOrSlug, request.body, actionContext(request)),
        ),
    );

    app.post(
      '/admin/tenants/:idOrSlug/repair',
      {
        schema: {
          tags,
          security,
          summary:
            'Finish a tenant a crash left half done (provisioning, purge), or check its tables against its entity version',
          params: IdOrSlugParams,
          response: {
            200: Type.Object({
              tenant: AdminTenantSchema,
              action: Type.Union([
                Type.Literal('provisioned'),
                Type.Literal('purged'),
                Type.Literal('checked'),
                Type.Literal('none'),
              ]),
              detail: Type.String(),
              apiKey: Type.Optional(IssuedKeySchema),
              differences: Type.Optional(Type.Array(Type.String())),
            }),
            ...problemResponses,
          },
        },
      },
      async (request) => {
        const report = await tenantry.tenants.repair(request.params.idOrSlug, actionContext(request));
        return {
          tenant: adminView(report.tenant),
          action: report.action,
          detail: report.detail,
          ...(report.apiKey
            ? {
                apiKey: {
                  keyId: report.apiKey.keyId,
                  key: report.apiKey.key,
                  warning: report.apiKey.warning,
                },
              }
            : {}),
          ...(report.differences ? { differences: [...report.differences] } : {}),
        };
      },
    );

    for (const action of ['activate', 'deactivate'] as const) {
      app.post(
        `/admin/tenants/:idOrSlug/${action}`,
        {
          schema: {
            tags,
            security,
            summary: `${action} a tenant`,
            params: IdOrSlugParams,
            response: tenantResponse,
          },
        },
        async (request) =>
          adminView(await tenantry.tenants[action](request.params.idOrSlug, actionContext(request))),
      );
    }

    app.post(
      '/admin/tenants/:idOrSlug/regenerate-api-key',
      {
        schema: {
          tags,
          security,
          summary: 'Revoke the tenant’s keys and issue a new one (shown once)',
          params: IdOrSlugParams,
          response: { 200: IssuedKeySchema, ...problemResponses },
        },
      },
      async (request) => tenantry.tenants.regenerateApiKey(request.params.idOrSlug, actionContext(request)),
    );

    app.post(
      '/admin/tenants/:idOrSlug/api-keys',
      {
        schema: {
          tags,
          security,
          summary:
            'Issue a further API key (shown once), keeping the others; refused at limits.maxApiKeys live keys',
          params: IdOrSlugParams,
          body: CreateApiKeyInputSchema,
          response: {
            201: Type.Object({
              ...IssuedKeySchema.properties,
              name: Type.String(),
              expiresAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
              permissions: Type.Union([Type.Array(Type.String()), Type.Null()]),
            }),
            ...problemResponses,
          },
        },
        // Every member is optional: a POST without a body is an empty one.
        preValidation: (request, _reply, done) => {
          request.body ??= {};
          done();
        },
      },
      async (request, reply) => {
        const created = await tenantry.createApiKey(
          request.params.idOrSlug,
          request.body,
          actionContext(request),
        );
        reply.code(201);
        return {
          ...created,
          expiresAt: created.expiresAt?.toISOString() ?? null,
          permissions: created.permissions === null ? null : [...created.permissions],
        };
      },
    );

    app.delete(
      '/admin/tenants/:idOrSlug/api-keys/:keyId',
      {
        schema: {
          tags,
          security,
          summary: 'Revoke one API key: it stops authenticating at once, in every server process',
          params: Type.Object(
            {
              idOrSlug: Type.String({ minLength: 1, maxLength: 100 }),
              keyId: Type.String({ minLength: 1, maxLength: 100 }),
            },
            { additionalProperties: false },
          ),
          response: { 200: ApiKeyInfoSchema, ...problemResponses },
        },
      },
      async (request) =>
        JSON.parse(
          JSON.stringify(
            await tenantry.tenants.revokeApiKey(
              request.params.idOrSlug,
              request.params.keyId,
              actionContext(request),
            ),
          ),
        ),
    );

    app.get(
      '/admin/tenants/:idOrSlug/keys',
      {
        schema: {
          tags,
          security,
          summary: 'List the tenant’s API keys (never the secrets)',
          params: IdOrSlugParams,
          querystring: Type.Object(
            { includeRevoked: Type.Optional(BooleanQuery) },
            { additionalProperties: false },
          ),
          response: { 200: Type.Object({ keys: Type.Array(ApiKeyInfoSchema) }), ...problemResponses },
        },
      },
      async (request) => {
        const keys = await tenantry.listKeys(request.params.idOrSlug, {
          includeRevoked: request.query.includeRevoked === 'true',
        });
        return { keys: keys.map((key) => JSON.parse(JSON.stringify(key))) };
      },
    );

    app.post(
      '/admin/tenants/:idOrSlug/hosts',
      {
        schema: {
          tags,
          security,
          summary: 'Add a host to a tenant',
          params: IdOrSlugParams,
          body: HostInputSchema,
          response: tenantResponse,
        },
      },
      async (request) =>
        adminView(
          await tenantry.tenants.addHost(request.params.idOrSlug, request.body, actionContext(request)),
        ),
    );

    app.delete(
      '/admin/tenants/:idOrSlug/hosts/:host',
      {
        schema: {
          tags,
          security,
          summary: 'Remove a host from a tenant',
          params: Type.Object(
            {
              idOrSlug: Type.String({ minLength: 1, maxLength: 100 }),
              host: Type.String({ minLength: 1, maxLength: 254 }),
            },
            { additionalProperties: false },
          ),
          response: tenantResponse,
        },
      },
      async (request) =>
        adminView(
          await tenantry.tenants.removeHost(
            request.params.idOrSlug,
            request.params.host,
            actionContext(request),
          ),
        ),
    );

    app.get(
      '/admin/audit',
      {
        schema: {
          tags,
          security,
          summary: 'Audit entries, newest first',
          querystring: Type.Object(
            {
              tenant: Type.Optional(Type.String({ maxLength: 100 })),
              action: Type.Optional(Type.String({ maxLength: 100 })),
              actor: Type.Optional(Type.String({ maxLength: 200 })),
              since: Type.Optional(Type.String({ maxLength: 40 })),
              until: Type.Optional(Type.String({ maxLength: 40 })),
              before: Type.Optional(Type.String({ maxLength: 20 })),
              limit: Type.Optional(Type.String({ maxLength: 5 })),
            },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({
              entries: Type.Array(AuditEntrySchema),
              next: Type.Union([Type.String(), Type.Null()]),
            }),
            ...problemResponses,
          },
        },
      },
      async (request) => {
        const query = request.query;
        const page = await tenantry.audit({
          tenant: query.tenant,
          action: query.action,
          actor: query.actor,
          since: parseDate(query.since, 'since'),
          until: parseDate(query.until, 'until'),
          before: query.before,
          limit: parseLimit(query.limit),
        });
        return {
          entries: page.entries.map((entry) => ({ ...entry, at: entry.at.toISOString() })),
          next: page.next,
        };
      },
    );
  };
}
