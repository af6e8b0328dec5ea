import Type from 'typebox';
import { ServerViewSchema, serverView } from '../../isolation/server-view.js';
import { defineOperation } from '../operation.js';

const ServerName = Type.String({ maxLength: 40 });

/** A server's name and how it is reached. */
const ServerInput = Type.Object(
  {
    name: ServerName,
    url: Type.String({ maxLength: 2048, description: 'The runtime role’s connection string' }),
    adminUrl: Type.Optional(
      Type.String({ maxLength: 2048, description: 'The owner’s connection string (default: url)' }),
    ),
  },
  { additionalProperties: false },
);

export const listServers = defineOperation({
  name: 'servers.list',
  summary: 'Database servers for database tenants, with how many tenants each holds',
  access: { operator: true },
  input: Type.Object({}, { additionalProperties: false }),
  output: Type.Array(ServerViewSchema),
  http: [{ method: 'GET', path: '/admin/servers', scope: 'admin' }],
  run: async (_input, { engine }) => (await engine.servers.list()).map(serverView),
});

export const addServer = defineOperation({
  name: 'servers.add',
  summary: 'Add a database server (it must answer and be allowed to create databases)',
  access: { operator: true },
  input: ServerInput,
  output: ServerViewSchema,
  audit: ['server.add'],
  http: [{ method: 'POST', path: '/admin/servers', scope: 'admin', status: 201 }],
  run: async (input, { engine, context }) => serverView(await engine.servers.add(input, context)),
});

export const updateServer = defineOperation({
  name: 'servers.update',
  summary:
    'Change how a database server is reached; the new URLs must reach the databases it holds, and every process uses them at once',
  access: { operator: true },
  input: ServerInput,
  output: ServerViewSchema,
  audit: ['server.update'],
  http: [{ method: 'PUT', path: '/admin/servers/:name', scope: 'admin', params: { name: 'name' } }],
  run: async (input, { engine, context }) => serverView(await engine.servers.update(input, context)),
});

export const removeServer = defineOperation({
  name: 'servers.remove',
  summary: 'Remove a database server that holds no tenant',
  access: { operator: true },
  input: Type.Object({ name: ServerName }, { additionalProperties: false }),
  // What the CLI prints; HTTP answers 204 without it.
  output: Type.Object({ removed: Type.String() }),
  audit: ['server.remove'],
  http: [
    {
      method: 'DELETE',
      path: '/admin/servers/:name',
      scope: 'admin',
      params: { name: 'name' },
      status: 204,
    },
  ],
  async run({ name }, { engine, context }) {
    await engine.servers.remove(name, context);
    return { removed: name };
  },
});
