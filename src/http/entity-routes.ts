import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { type EntityAction, entityPermission } from '../auth/permissions.js';
import type { Engine } from '../engine/engine.js';
import type { Entity } from '../entities/entity.js';
import { createInputSchema, outputSchema, patchInputSchema } from '../entities/entity-input.js';
import type { EntityRepository, RowQuota } from '../entities/entity-repository.js';
import { type ListQuery, MAX_BATCH } from '../entities/entity-repository.js';
import { TenantryError } from '../errors.js';
import { problemResponses, Security } from './schemas.js';

const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) }, { additionalProperties: false });

/**
 * The list parameters of a request: each given once, as text. A null-prototype object, so that a
 * parameter named `__proto__` is kept (and refused as an unknown field) instead of vanishing.
 */
export function listQuery(request: FastifyRequest): ListQuery {
  const query: Record<string, string> = Object.create(null);
  for (const [key, value] of Object.entries(request.query as Record<string, unknown>)) {
    if (typeof value !== 'string') {
      throw new TenantryError('validation_failed', `${key} may be given once`, { field: key });
    }
    query[key] = value;
  }
  return query;
}

/** Whether a change only sets values to null: it cannot make a row bigger. */
function clearsOnly(body: unknown): boolean {
  return typeof body === 'object' && body !== null && Object.values(body).every((value) => value === null);
}

/**
 * The repository of an entity for this request: the tenant's tables may be at an older entity
 * version than the code (a rollout in progress), so entities and fields they lack are refused
 * as unavailable rather than failing in SQL, and nothing is written to a column that is not there.
 */
function repositoryFor(
  request: FastifyRequest,
  engine: Engine,
  entity: Entity,
  action: EntityAction,
  body?: unknown,
): EntityRepository {
  if (entity.scope === 'tenant' && !request.permissions?.has(entityPermission(entity.name, action))) {
    throw new TenantryError(
      'forbidden',
      `this needs the permission ${entityPermission(entity.name, action)}`,
    );
  }
  if (entity.feature !== undefined && !request.tenant?.hasFeature(entity.feature)) {
    throw new TenantryError(
      'feature_disabled',
      `${entity.name} needs the feature "${entity.feature}", which this tenant does not have`,
    );
  }
  const view = entity.scope === 'shared' ? engine.schemas.sharedView() : request.entityView;
  const repository = view?.repository(entity.name);
  if (!view || !repository) {
    throw new TenantryError(
      'unavailable',
      `${entity.name} is not available for this tenant until its tables are migrated (tenantry migrate)`,
    );
  }
  const missing = view.missingFields(entity.name);
  if (missing.length > 0 && body !== undefined) {
    const rows = Array.isArray((body as { rows?: unknown }).rows)
      ? (body as { rows: unknown[] }).rows
      : [body];
    for (const row of rows) {
      const field = missing.find(
        (name) => row !== null && typeof row === 'object' && Object.hasOwn(row, name),
      );
      if (field) {
        throw new TenantryError(
          'unavailable',
          `${entity.name}.${field} is not available for this tenant until its tables are migrated`,
          { field },
        );
      }
    }
  }
  return repository;
}

/** The tenant's row limits, when it has any (its plan's or its own). */
function rowQuota(request: FastifyRequest, engine: Engine): RowQuota | undefined {
  const limits = request.tenant?.effective.limits;
  if (limits?.maxRows === undefined && limits?.maxRowsPerEntity === undefined) return undefined;
  const view = request.entityView;
  return {
    perEntity: limits.maxRowsPerEntity,
    total: limits.maxRows,
    tenantSlug: request.tenant!.slug,
    entities: engine.config.entities
      .filter((entity) => entity.scope === 'tenant' && view?.repository(entity.name))
      .map((entity) => entity.name),
  };
}

/** What every route of one entity is built from. */
interface EntityRoutes {
  readonly app: FastifyInstance;
  readonly engine: Engine;
  readonly entity: Entity;
  readonly base: string;
  readonly tags: string[];
  readonly row: ReturnType<typeof outputSchema>;
  repo(request: FastifyRequest, action: EntityAction, body?: unknown): EntityRepository;
}

/**
 * The REST API of the declared entities, under /api/v1. Registered inside the tenant scope:
 * every handler works through `request.db`, which is bound to the resolved tenant.
 */
export function entityRoutes(engine: Engine) {
  return (app: FastifyInstance): void => {
    for (const entity of engine.config.entities) {
      const routes: EntityRoutes = {
        app,
        engine,
        entity,
        base: `/api/v1/${entity.name}`,
        tags: [entity.name],
        row: outputSchema(entity),
        repo: (request, action, body) => repositoryFor(request, engine, entity, action, body),
      };
      listRoute(routes);
      getRoute(routes);
      if (entity.scope === 'shared') {
        refuseWrites(routes);
        continue;
      }
      createRoute(routes);
      batchRoute(routes);
      patchRoute(routes);
      deleteRoute(routes);
    }
  };
}

/**
 * The list parameters, documented: each filterable field (`?field=`, `?field[gte|lte|in|like]=`),
 * sort, limit, the cursor and the search. Checked by the list query itself (every parameter may
 * be given once, unknown ones are refused), so the schema leaves their values alone.
 */
function listParameters(entity: Entity) {
  const documented = (description: string) => Type.Unknown({ description });
  const fields = Object.fromEntries(
    entity.fields.map((field) => [
      field.name,
      Type.Optional(documented(`equals; also ${field.name}[gte], [lte], [in] (comma-separated), [like]`)),
    ]),
  );
  return Type.Object(
    {
      ...fields,
      sort: Type.Optional(documented('a field, or -field for descending; default: created_at')),
      limit: Type.Optional(documented('rows per page, 1 to 1000 (default 100)')),
      next: Type.Optional(documented('the cursor of the next page, from the previous page')),
      ...(entity.fields.some((field) => field.search)
        ? { q: Type.Optional(documented('full-text search')) }
        : {}),
    },
    { additionalProperties: true },
  );
}

function listRoute({ app, entity, base, tags, row, repo }: EntityRoutes): void {
  app.get(
    base,
    {
      schema: {
        tags,
        security: Security.tenant,
        summary: `List ${entity.name}: filters ?field=, ?field[gte|lte|in|like]=, sort, limit, next${entity.fields.some((f) => f.search) ? ', q' : ''}`,
        querystring: listParameters(entity),
        response: {
          200: Type.Object({ items: Type.Array(row), next: Type.Union([Type.String(), Type.Null()]) }),
          ...problemResponses,
        },
      },
    },
    async (request) => repo(request, 'read').list(request.db, listQuery(request)),
  );
}

function getRoute({ app, entity, base, tags, row, repo }: EntityRoutes): void {
  app.get(
    `${base}/:id`,
    {
      schema: {
        tags,
        security: Security.tenant,
        summary: `Get one ${entity.name}`,
        params: IdParams,
        response: { 200: row, ...problemResponses },
      },
    },
    async (request) => repo(request, 'read').get(request.db, (request.params as { id: string }).id),
  );
}

function refuseWrites({ app, entity, base }: EntityRoutes): void {
  const refuse = async () => {
    throw new TenantryError('forbidden', `${entity.name} is shared data: tenants may only read it`);
  };
  app.post(base, { schema: { hide: true } }, refuse);
  app.patch(`${base}/:id`, { schema: { hide: true } }, refuse);
  app.delete(`${base}/:id`, { schema: { hide: true } }, refuse);
}

function createRoute({ app, engine, entity, base, tags, row, repo }: EntityRoutes): void {
  app.post(
    base,
    {
      schema: {
        tags,
        security: Security.tenant,
        summary: `Create a ${entity.name}`,
        body: createInputSchema(entity),
        response: { 201: row, ...problemResponses },
      },
    },
    async (request, reply) => {
      const repository = repo(request, 'create', request.body);
      await engine.usage.storage.admitWrite(request.tenant!);
      const created = await repository.create(request.db, request.body, rowQuota(request, engine));
      reply.code(201).header('location', `${base}/${created.id}`);
      return created;
    },
  );
}

function batchRoute({ app, engine, entity, base, tags, row, repo }: EntityRoutes): void {
  app.post(
    `${base}/batch`,
    {
      schema: {
        tags,
        security: Security.tenant,
        summary: `Create up to ${MAX_BATCH} ${entity.name} in one transaction`,
        body: Type.Object(
          { rows: Type.Array(createInputSchema(entity), { minItems: 1, maxItems: MAX_BATCH }) },
          { additionalProperties: false },
        ),
        response: { 201: Type.Object({ items: Type.Array(row) }), ...problemResponses },
      },
    },
    async (request, reply) => {
      const rows = (request.body as { rows: unknown[] }).rows;
      const repository = repo(request, 'create', request.body);
      await engine.usage.storage.admitWrite(request.tenant!);
      const items = await repository.createMany(request.db, rows, rowQuota(request, engine));
      reply.code(201);
      return { items };
    },
  );
}

function patchRoute({ app, engine, entity, base, tags, row, repo }: EntityRoutes): void {
  app.patch(
    `${base}/:id`,
    {
      schema: {
        tags,
        security: Security.tenant,
        summary: `Change a ${entity.name}`,
        params: IdParams,
        body: patchInputSchema(entity),
        response: { 200: row, ...problemResponses },
      },
    },
    async (request) => {
      const repository = repo(request, 'update', request.body);
      // Over the storage quota, only clearing values (setting them to null) is still allowed.
      if (!clearsOnly(request.body)) await engine.usage.storage.admitWrite(request.tenant!);
      return repository.update(request.db, (request.params as { id: string }).id, request.body);
    },
  );
}

function deleteRoute({ app, entity, base, tags, repo }: EntityRoutes): void {
  app.delete(
    `${base}/:id`,
    {
      schema: {
        tags,
        security: Security.tenant,
        summary: `Delete a ${entity.name}`,
        params: IdParams,
        response: { 204: Type.Null(), ...problemResponses },
      },
    },
    async (request, reply) => {
      await repo(request, 'delete').delete(request.db, (request.params as { id: string }).id);
      reply.code(204).send();
    },
  );
}
