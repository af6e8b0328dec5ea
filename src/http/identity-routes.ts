import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { Principal } from '../auth/delegation.js';
import { requirePermission } from '../auth/delegation.js';
import { TenantryError } from '../errors.js';
import type { Tenantry } from '../tenantry.js';
import { actionContext } from './request-context.js';
import { problemResponses } from './schemas.js';

const IdParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100 }) },
  { additionalProperties: false },
);
const Refs = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100 });
const Permissions = Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 1000 });

const UserCreate = Type.Object(
  {
    email: Type.String({ minLength: 3, maxLength: 254 }),
    name: Type.Optional(Type.String({ maxLength: 200 })),
    password: Type.Optional(Type.String({ minLength: 1, maxLength: 1024 })),
    roles: Type.Optional(Refs),
    groups: Type.Optional(Refs),
  },
  { additionalProperties: false },
);
const UserPatch = Type.Object(
  {
    email: Type.Optional(Type.String({ minLength: 3, maxLength: 254 })),
    name: Type.Optional(Type.Union([Type.String({ maxLength: 200 }), Type.Null()])),
    roles: Type.Optional(Refs),
    groups: Type.Optional(Refs),
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('inactive')])),
  },
  { additionalProperties: false },
);
const RoleBody = (required: boolean) =>
  Type.Object(
    {
      name: required
        ? Type.String({ minLength: 1, maxLength: 63 })
        : Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
      permissions: Type.Optional(Permissions),
      default: Type.Optional(Type.Boolean()),
    },
    { additionalProperties: false },
  );
const GroupBody = (required: boolean) =>
  Type.Object(
    {
      name: required
        ? Type.String({ minLength: 1, maxLength: 63 })
        : Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
      roles: Type.Optional(Refs),
      members: Type.Optional(Refs),
    },
    { additionalProperties: false },
  );

/** The acting principal of a tenant request: what it holds bounds what it may grant. */
export function principalOf(tenantry: Tenantry, request: FastifyRequest): Principal {
  return tenantry.identity.actor(
    request.tenant!.id,
    request.permissions!,
    actionContext(request),
    request.tenantResolution?.session?.userId,
    request.tenantResolution?.keyScope?.createdBy ?? undefined,
  );
}

/**
 * Every refused access-management request (forbidden, or an id that is not in the tenant) is
 * audited: a user probing other tenants' ids or trying to raise itself leaves a trail.
 */
export function auditRefusals(tenantry: Tenantry, app: FastifyInstance): void {
  app.addHook('onError', async (request, _reply, error) => {
    if (!(error instanceof TenantryError) || !request.tenant) return;
    if (error.code !== 'forbidden' && error.code !== 'not_found') return;
    await tenantry
      .recordAudit(actionContext(request), {
        action: 'access.denied',
        outcome: 'denied',
        tenantId: request.tenant.id,
        target: `${request.method} ${request.routeOptions.url ?? request.url}`,
        details: { code: error.code, id: (request.params as { id?: string } | undefined)?.id },
      })
      .catch((failure: unknown) => request.log.warn({ err: failure }, 'audit of a refusal failed'));
  });
}

/**
 * A tenant's own users, roles and groups, managed by its admins (`/api/v1/users|roles|groups`).
 * Registered inside the tenant scope: every id is looked up within the request's tenant only.
 */
export function identityRoutes(tenantry: Tenantry) {
  return (app: FastifyInstance): void => {
    auditRefusals(tenantry, app);
    const { users, roles, groups } = tenantry.identity;
    const id = (request: FastifyRequest) => (request.params as { id: string }).id;
    const reading = (permission: string) => (request: FastifyRequest) => {
      const principal = principalOf(tenantry, request);
      requirePermission(principal, permission);
      return principal;
    };
    const schema = (tag: string, summary: string, extra: Record<string, unknown> = {}) => ({
      schema: { tags: [tag], summary, response: { ...problemResponses }, ...extra },
    });

    app.get(
      '/api/v1/users',
      schema('users', 'List the users of this tenant (users:manage)'),
      async (request) => ({
        items: await users.list(reading('users:manage')(request).tenantId),
      }),
    );
    app.get(
      '/api/v1/users/:id',
      schema('users', 'One user (users:manage)', { params: IdParams }),
      async (request) => users.get(reading('users:manage')(request).tenantId, id(request)),
    );
    app.post(
      '/api/v1/users',
      schema('users', 'Create a user (without a password: a set-up token, shown once)', { body: UserCreate }),
      async (request, reply) => {
        const created = await users.create(principalOf(tenantry, request), request.body as never);
        reply.code(201);
        return created;
      },
    );
    app.patch(
      '/api/v1/users/:id',
      schema('users', 'Change a user: name, email, status, roles, groups', {
        params: IdParams,
        body: UserPatch,
      }),
      async (request) => users.update(principalOf(tenantry, request), id(request), request.body as never),
    );
    app.delete(
      '/api/v1/users/:id',
      schema('users', 'Delete a user', { params: IdParams }),
      async (request, reply) => {
        await users.delete(principalOf(tenantry, request), id(request));
        reply.code(204).send();
      },
    );
    app.post(
      '/api/v1/users/:id/reset-password',
      schema('users', 'End the user’s sessions and issue a set-up token', { params: IdParams }),
      async (request) => users.resetPassword(principalOf(tenantry, request), id(request)),
    );

    app.get(
      '/api/v1/roles',
      schema('roles', 'List the roles of this tenant (roles:manage)'),
      async (request) => ({
        items: await roles.list(reading('roles:manage')(request).tenantId),
      }),
    );
    app.get(
      '/api/v1/roles/:id',
      schema('roles', 'One role (roles:manage)', { params: IdParams }),
      async (request) => roles.get(reading('roles:manage')(request).tenantId, id(request)),
    );
    app.post(
      '/api/v1/roles',
      schema('roles', 'Create a role: only with permissions you hold', { body: RoleBody(true) }),
      async (request, reply) => {
        const created = await roles.create(principalOf(tenantry, request), request.body as never);
        reply.code(201);
        return created;
      },
    );
    app.patch(
      '/api/v1/roles/:id',
      schema('roles', 'Change a role: added permissions must be yours', {
        params: IdParams,
        body: RoleBody(false),
      }),
      async (request) => roles.update(principalOf(tenantry, request), id(request), request.body as never),
    );
    app.delete(
      '/api/v1/roles/:id',
      schema('roles', 'Delete a role', { params: IdParams }),
      async (request, reply) => {
        await roles.delete(principalOf(tenantry, request), id(request));
        reply.code(204).send();
      },
    );

    app.get(
      '/api/v1/keys',
      schema('keys', 'The API keys of this tenant, never their secrets (keys:manage)'),
      async (request) => {
        const principal = reading('keys:manage')(request);
        return { items: await tenantry.listKeys(principal.tenantId) };
      },
    );
    app.post(
      '/api/v1/keys',
      schema('keys', 'A new key (shown once) holding at most your permissions; optional expiry', {
        body: Type.Object(
          {
            name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
            permissions: Type.Optional(Permissions),
            expiresAt: Type.Optional(Type.String({ minLength: 1, maxLength: 40 })),
          },
          { additionalProperties: false },
        ),
      }),
      async (request, reply) => {
        const created = await tenantry.createScopedKey(principalOf(tenantry, request), request.body ?? {});
        reply.code(201);
        return created;
      },
    );
    app.delete(
      '/api/v1/keys/:id',
      schema('keys', 'Revoke a key of this tenant (keys:manage)', { params: IdParams }),
      async (request) => {
        return tenantry.revokeScopedKey(principalOf(tenantry, request), id(request));
      },
    );

    app.get(
      '/api/v1/groups',
      schema('groups', 'List the groups of this tenant (groups:manage)'),
      async (request) => ({
        items: await groups.list(reading('groups:manage')(request).tenantId),
      }),
    );
    app.get(
      '/api/v1/groups/:id',
      schema('groups', 'One group (groups:manage)', { params: IdParams }),
      async (request) => groups.get(reading('groups:manage')(request).tenantId, id(request)),
    );
    app.post(
      '/api/v1/groups',
      schema('groups', 'Create a group', { body: GroupBody(true) }),
      async (request, reply) => {
        const created = await groups.create(principalOf(tenantry, request), request.body as never);
        reply.code(201);
        return created;
      },
    );
    app.patch(
      '/api/v1/groups/:id',
      schema('groups', 'Change a group: name, roles, members', { params: IdParams, body: GroupBody(false) }),
      async (request) => groups.update(principalOf(tenantry, request), id(request), request.body as never),
    );
    app.delete(
      '/api/v1/groups/:id',
      schema('groups', 'Delete a group', { params: IdParams }),
      async (request, reply) => {
        await groups.delete(principalOf(tenantry, request), id(request));
        reply.code(204).send();
      },
    );
  };
}
