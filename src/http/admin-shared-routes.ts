import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { createInputSchema, outputSchema, patchInputSchema } from '../entities/entity-input.js';
import { TenantryError } from '../errors.js';
import type { Tenantry } from '../tenantry.js';
import { listQuery } from './entity-routes.js';
import { actionContext } from './request-context.js';
import { problemResponses } from './schemas.js';

const IdParams = Type.Object({ id: Type.String({ maxLength: 100 }) }, { additionalProperties: false });

/** Global admins write shared entities under /admin/shared/<entity>. Registered inside `adminScope`. */
export function adminSharedRoutes(tenantry: Tenantry) {
  return (app: FastifyInstance): void => {
    const db = tenantry.data.forSharedAdmin();
    for (const entity of tenantry.config.entities.filter((e) => e.scope === 'shared')) {
      // The shared tables may be behind the code during a rollout: their version decides.
      const repository = () => {
        const found = tenantry.sharedEntityView().repository(entity.name);
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
      const security = [{ adminToken: [] }];
      const row = outputSchema(entity);
      const audit = (action: string, target: string, request: Parameters<typeof actionContext>[0]) =>
        tenantry.recordAudit(actionContext(request), {
          action: `shared.${entity.name}.${action}`,
          outcome: 'success',
          target,
        });

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
          const created = await repository().create(db, request.body);
          await audit('create', String(created.id), request);
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
          const updated = await repository().update(db, id, request.body);
          await audit('update', id, request);
          return updated;
        },
      );
      app.delete(
        `${base}/:id`,
        { schema: { tags, security, params: IdParams, response: { 204: Type.Null(), ...problemResponses } } },
        async (request, reply) => {
          const id = (request.params as { id: string }).id;
          await repository().delete(db, id);
          await audit('delete', id, request);
          reply.code(204).send();
        },
      );
    }
  };
}
