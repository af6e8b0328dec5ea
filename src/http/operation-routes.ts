import { createReadStream } from 'node:fs';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import Type, { type TSchema } from 'typebox';
import type { Engine } from '../engine/engine.js';
import type { HttpRoute, Operation } from '../operations/operation.js';
import { type Caller, runOperation } from '../operations/run-operation.js';
import { problemResponses, Security } from './schemas.js';

type Members = Readonly<Record<string, TSchema>>;

/**
 * Registers the HTTP routes of `operations` that belong to `scope` on a scope's plugin (the
 * admin scope or a tenant scope, whose hooks have authenticated the caller). The route's path
 * parameters, query string and body are checked against the operation's own input schema, split
 * as its route says, and the answer is serialized with its output schema.
 */
export function registerOperationRoutes(
  app: FastifyInstance,
  engine: Engine,
  operations: readonly Operation[],
  scope: HttpRoute['scope'],
  callerOf: (request: FastifyRequest) => Caller,
): void {
  for (const operation of operations) {
    for (const route of operation.http ?? []) {
      if (route.scope === scope) registerRoute(app, engine, operation, route, callerOf);
    }
  }
}

function registerRoute(
  app: FastifyInstance,
  engine: Engine,
  operation: Operation,
  route: HttpRoute,
  callerOf: (request: FastifyRequest) => Caller,
): void {
  const members = operation.input.properties as Members;
  const fromPath = route.params ?? {};
  const fromQuery = route.query ?? [];
  const taken = new Set([...Object.values(fromPath), ...fromQuery]);
  // A tenant actor's tenant is the request's own: the `tenant` member is never read from it.
  if (route.scope === 'tenant') taken.add('tenant');
  const inBody =
    route.method === 'GET' || route.method === 'DELETE'
      ? []
      : Object.keys(members).filter((name) => !taken.has(name));
  const body = inBody.length > 0 ? subset(members, inBody) : undefined;
  const query = fromQuery.length > 0 ? subset(members, fromQuery, { optional: true }) : undefined;
  const status = route.status ?? 200;
  // A body whose members are all optional may be left out: it is then an empty one.
  const bodyOptional =
    body !== undefined && ((body as { required?: readonly string[] }).required ?? []).length === 0;
  app.route({
    method: route.method,
    url: route.path,
    schema: {
      tags: [route.scope === 'admin' ? 'admin' : operation.name.split('.')[0]!],
      summary: route.summary ?? operation.summary,
      operationId: route.scope === 'admin' ? operation.name : `${operation.name}.own`,
      security: Security[route.scope],
      ...(Object.keys(fromPath).length > 0 ? { params: pathParams(members, fromPath) } : {}),
      ...(query ? { querystring: query } : {}),
      ...(body ? { body } : {}),
      response: {
        ...(route.download
          ? {}
          : { [status]: status === 204 ? Type.Null() : (route.respond?.schema ?? operation.output) }),
        ...problemResponses,
      },
    },
    // Query values arrive as text: a flag or a number is converted before validation, so a
    // malformed one is refused naming the parameter.
    preValidation: (request, _reply, done) => {
      if (query) request.query = typedQuery(request.query as Record<string, unknown>, query);
      if (bodyOptional && request.body === undefined) request.body = {};
      done();
    },
    handler: async (request: FastifyRequest, reply: FastifyReply) => {
      const input: Record<string, unknown> = { ...(request.body as object | undefined) };
      const params = request.params as Record<string, string>;
      for (const [parameter, member] of Object.entries(fromPath)) input[member] = params[parameter];
      const query = request.query as Record<string, unknown>;
      for (const member of fromQuery) if (query[member] !== undefined) input[member] = query[member];
      const output = await runOperation(engine, operation, input, callerOf(request));
      if (route.download) {
        const file = route.download(output as never);
        return reply
          .header('content-type', file.type)
          .header('content-disposition', `attachment; filename="${file.name}"`)
          .send(createReadStream(file.file));
      }
      if (route.location) reply.header('location', route.location(output as never));
      if (status === 204) return reply.code(204).send();
      reply.code(status);
      return route.respond ? route.respond.from(output as never) : output;
    },
  });
}

/** An object schema of some members of the input (all optional in a query string). */
function subset(members: Members, names: readonly string[], options: { optional?: boolean } = {}) {
  const picked: Record<string, TSchema> = {};
  for (const name of names) {
    const member = members[name];
    if (member === undefined) throw new Error(`route names ${name}, which is not an input member`);
    picked[name] = options.optional ? Type.Optional(member) : member;
  }
  return Type.Object(picked, { additionalProperties: false });
}

/** The path parameters under their URL names; a path parameter is always present. */
function pathParams(members: Members, fromPath: Readonly<Record<string, string>>) {
  const params: Record<string, TSchema> = {};
  for (const [parameter, member] of Object.entries(fromPath)) {
    const schema = members[member];
    if (schema === undefined) throw new Error(`path parameter ${parameter} names no input member ${member}`);
    // A plain copy: the member may be optional in the input (a tenant actor never sends it).
    params[parameter] = { ...schema };
  }
  return Type.Object(params, { additionalProperties: false });
}

function typedQuery(
  query: Record<string, unknown>,
  schema: { properties: Members },
): Record<string, unknown> {
  const typed: Record<string, unknown> = { ...query };
  for (const [name, value] of Object.entries(query)) {
    const type = (schema.properties[name] as { type?: unknown } | undefined)?.type;
    if (typeof value !== 'string') continue;
    if (type === 'boolean' && (value === 'true' || value === 'false')) typed[name] = value === 'true';
    else if ((type === 'integer' || type === 'number') && /^-?\d{1,15}(\.\d+)?$/.test(value))
      typed[name] = Number(value);
  }
  return typed;
}
