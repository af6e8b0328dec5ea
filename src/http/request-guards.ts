import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { assertJsonValue } from '../validation.js';
import { problemFor, sendProblem } from './problem.js';

/** Fastify's JSON parser (prototype poisoning refused), then `assertJsonValue`. */
export function guardJsonBodies(app: FastifyInstance): void {
  const parse = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    parse(request, String(body), (error, value) => {
      if (error) return done(error, undefined);
      try {
        assertJsonValue(value, '(body)', 'the body');
      } catch (refused) {
        return done(refused as Error, undefined);
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

const CLIENT_ERROR_DETAIL = {
  400: 'the request is malformed',
  408: 'the request took too long to arrive',
  431: 'the request headers are larger than allowed',
} as const;

/**
 * Requests Node's HTTP parser refuses (headers over the size limit, broken chunked framing) get a
 * problem+json answer too, then the connection closes; Fastify's default answers plain JSON.
 */
export function clientErrorProblem(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status: keyof typeof CLIENT_ERROR_DETAIL =
    error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
  const detail = CLIENT_ERROR_DETAIL[status];
  const body = JSON.stringify({ ...problemFor('validation_failed', detail), status });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

/**
 * How many Host headers a request sent. Node keeps the first and drops the others, so a proxy
 * that reads the last one and Tenantry could resolve different tenants: a second one is refused.
 */
export function hostHeaderCount(rawHeaders: readonly string[]): number {
  let count = 0;
  for (let index = 0; index < rawHeaders.length; index += 2) {
    const name = rawHeaders[index]!;
    if (name.length === 4 && name.toLowerCase() === 'host') count += 1;
  }
  return count;
}
