import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { TenantryError } from '../errors.js';
import { problemFor, sendProblem } from './problem.js';

/**
 * Nesting deeper than this is refused: no declared field needs it, and serializing a value nested
 * thousands of levels deep overflows the stack (a 9 KB body made a 500, and a stored setting
 * broke its tenant's config route for good).
 */
export const MAX_JSON_DEPTH = 64;

/** A UTF-16 surrogate without its other half: valid in a JavaScript string, refused by jsonb. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The first problem of a parsed JSON body that every route refuses: nesting beyond
 * MAX_JSON_DEPTH, or a string (value or member name) that is not well-formed Unicode (`"\ud800"`
 * parses, then PostgreSQL refuses it, possibly after another write of the same request went in).
 */
export function jsonBodyProblem(value: unknown, depth = 0): string | undefined {
  if (typeof value === 'string') return LONE_SURROGATE.test(value) ? 'malformed' : undefined;
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_JSON_DEPTH) return 'deep';
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = jsonBodyProblem(item, depth + 1);
      if (problem) return problem;
    }
    return undefined;
  }
  for (const [key, item] of Object.entries(value)) {
    if (LONE_SURROGATE.test(key)) return 'malformed';
    const problem = jsonBodyProblem(item, depth + 1);
    if (problem) return problem;
  }
  return undefined;
}

/** Fastify's JSON parser (prototype poisoning refused), then the checks above. */
export function guardJsonBodies(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parse(request, String(body), (error, value) => {
      if (error) return done(error, undefined);
      const problem = jsonBodyProblem(value);
      if (problem === 'deep') {
        return done(
          new TenantryError('validation_failed', `the body nests deeper than ${MAX_JSON_DEPTH} levels`, {
            field: '(body)',
          }),
          undefined,
        );
      }
      if (problem === 'malformed') {
        return done(
          new TenantryError('validation_failed', 'the body holds a string that is not valid Unicode', {
            field: '(body)',
          }),
          undefined,
        );
      }
      done(null, value);
    });
  });
}

/** Errors Fastify raises before routing (a malformed URL, an over-long path parameter) as problems. */
export function frameworkErrorProblem(error: Error, request: FastifyRequest, reply: FastifyReply): void {
  const code = (error as { code?: string }).code;
  const detail =
    code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'a path segment is longer than allowed'
      : 'the URL is malformed (bad percent-encoding)';
  sendProblem(request, reply, problemFor('validation_failed', detail));
}

/**
 * Requests Node's HTTP parser refuses (headers over the size limit, broken chunked framing) get a
 * problem+json answer too, then the connection closes; Fastify's default answers plain JSON.
 */
export function clientErrorProblem(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status =
    error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const detail =
    status === 431
      ? 'the request headers are larger than allowed'
      : status === 408
        ? 'the request took too long to arrive'
        : 'the request is malformed';
  const body = JSON.stringify({ ...problemFor('validation_failed', detail), status });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}
