import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { Queryable } from '../db/database.js';
import type { Engine } from '../engine/engine.js';
import { type EntityDb, SHARED_SCHEMA } from '../entities/entity-db.js';
import { createInputSchema, outputSchema, patchInputSchema } from '../entities/entity-input.js';
import { TenantryError } from '../errors.js';
import { auditedChange, type ChangeRecord } from '../runtime/audited-change.js';
import { listQuery } from './entity-routes.js';
import { actionContext } from './request-context.js';
import { problemResponses, Security } from './schemas.js';

/** Shared tables written inside one transaction (the owner's): the repository's statements run on it. */
function sharedOn(tx: Queryable): EntityDb {
  return {
    tenantId: '',
    placement: { schema: SHARED_SCHEMA },
    query: (sql, params) => tx.query(sql, params),
    transaction: (fn) => fn(tx),
    queryShared: (sql, params) => tx.query(sql, params),
  };
}

const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) }, { additionalProperties: false });

/** Global admins write shared entities under /admin/shared/<entity>. Registered inside `adminScope`. */
export function adminSharedRoutes(engine: Engine) {
  return (app: FastifyInstance): void => {
    const db = engine.data.forSharedAdmin();
    for (const entity of engine.config.entities.filter((e) => e.scope === 'shared')) {
      // The shared tables may be behind the code during a rollout: their version decides.
      const repository = () => {
        const found = engine.schemas.sharedView().repository(entity.name);
        if (!found) {
          throw new TenantryError(
            'unavailable',
            `${entity.name} is not available until the shared tables are migrated (tenantry migrate)`,
          );
        }
        return found;
      };
      const base = `/admin/shared/${entity.name}`;
      const tags = ['admin', entity.name];
      const security = Security.admin;
      const row = outputSchema(entity);
      // The write and its audit entry commit together, in one transaction of the owner.
      const change = <T>(
        request: FastifyRequest,
        action: string,
        target: string | undefined,
        work: (tx: EntityDb, record: ChangeRecord) => Promise<T>,
      ) =>
        auditedChange(
          { bus: engine.bus },
          engine.db.owner,
          actionContext(request),
          { action: `shared.${entity.name}.${action}`, target },
          (tx, record) => work(sharedOn(tx), record),
        );

      app.get(base, { schema: { tags, security, summary: `List shared ${entity.name}` } }, async (request) =>
        repository().list(db, listQuery(request)),
      );
      app.get(
        `${base}/:id`,
        { schema: { tags, security, params: IdParams, response: { 200: row, ...problemResponses } } },
        async (request) => repository().get(db, (request.params as { id: string }).id),
      );
      app.post(
        base,
        {
          schema: {
            tags,
            security,
            body: createInputSchema(entity),
            response: { 201: row, ...problemResponses },
          },
        },
        async (request, reply) => {
          const created = await change(request, 'create', undefined, async (tx, record) => {
            const row = await repository().create(tx, request.body);
            record.describe({ target: String(row.id) });
            return row;
          });
          reply.code(201);
          return created;
        },
      );
      app.patch(
        `${base}/:id`,
        {
          schema: {
            tags,
            security,
            params: IdParams,
            body: patchInputSchema(entity),
            response: { 200: row, ...problemResponses },
          },
        },
        async (request) => {
          const id = (request.params as { id: string }).id;
          return change(request, 'update', id, (tx) => repository().update(tx, id, request.body));
        },
      );
      app.delete(
        `${base}/:id`,
        { schema: { tags, security, params: IdParams, response: { 204: Type.Null(), ...problemResponses } } },
        async (request, reply) => {
          const id = (request.params as { id: string }).id;
          await change(request, 'delete', id, (tx) => repository().delete(tx, id));
          reply.code(204).send();
        },
      );
    }
  };
}
