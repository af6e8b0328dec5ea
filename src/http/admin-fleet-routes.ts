import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { Tenantry } from '../tenantry.js';
import { actionContext } from './request-context.js';
import { problemResponses } from './schemas.js';

const tags = ['admin'];
const security = [{ adminToken: [] }];

const ServerSchema = Type.Object({
  name: Type.String(),
  url: Type.String({ description: 'Runtime connection string, password masked' }),
  tenants: Type.Integer(),
  createdAt: Type.String({ format: 'date-time' }),
});

/**
 * Operator routes for the fleet: database servers, and the migration plan (read-only: the
 * migration itself is a long operation run by `tenantry migrate`, with progress and resume).
 */
export function adminFleetRoutes(tenantry: Tenantry) {
  return (base: FastifyInstance): void => {
    const app = base.withTypeProvider<TypeBoxTypeProvider>();

    app.get(
      '/admin/servers',
      {
        schema: {
          tags,
          security,
          summary: 'Database servers for database tenants',
          response: { 200: Type.Array(ServerSchema), ...problemResponses },
        },
      },
      async () => tenantry.servers.list(),
    );

    app.post(
      '/admin/servers',
      {
        schema: {
          tags,
          security,
          summary: 'Add a database server (it must answer and be allowed to create databases)',
          body: Type.Object(
            {
              name: Type.String({ maxLength: 40 }),
              url: Type.String({ maxLength: 2048 }),
              adminUrl: Type.Optional(Type.String({ maxLength: 2048 })),
            },
            { additionalProperties: false },
          ),
          response: { 201: ServerSchema, ...problemResponses },
        },
      },
      async (request, reply) => {
        const added = await tenantry.servers.add(request.body, actionContext(request));
        reply.code(201);
        return added;
      },
    );

    app.delete(
      '/admin/servers/:name',
      {
        schema: {
          tags,
          security,
          summary: 'Remove a database server that holds no tenant',
          params: Type.Object({ name: Type.String({ maxLength: 40 }) }, { additionalProperties: false }),
          response: { 204: Type.Null(), ...problemResponses },
        },
      },
      async (request, reply) => {
        await tenantry.servers.remove(request.params.name, actionContext(request));
        reply.code(204).send(null);
      },
    );

    app.get(
      '/admin/migrations/plan',
      {
        schema: {
          tags,
          security,
          summary:
            'What `tenantry migrate` would change, per entity version, with its SQL per isolation level',
        },
      },
      async () => tenantry.fleet.plan(),
    );
  };
}
