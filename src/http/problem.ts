import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { SqlState, sqlStateOf } from '../db/sqlstate.js';
import { type ErrorCode, errorCatalogue, isTenantryError } from '../errors.js';
import { allowedValuesMessage } from '../validation.js';

/** An RFC 9457 problem document with Tenantry's stable `code` member. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly code: ErrorCode;
  readonly detail: string;
  readonly field?: string;
  readonly requestId?: string;
  /** Seconds before a retry may succeed; sent as Retry-After, and in the body for clients that log it. */
  readonly retryAfter?: number;
}

export function problemFor(code: ErrorCode, detail: string, field?: string): Problem {
  const entry = errorCatalogue[code];
  return {
    type: `urn:tenantry:problem:${code}`,
    title: entry.title,
    status: entry.status,
    code,
    detail,
    ...(field === undefined ? {} : { field }),
  };
}

interface AjvLikeError {
  instancePath?: string;
  params?: Record<string, unknown>;
  message?: string;
  keyword?: string;
}

function validationProblem(error: FastifyError): Problem {
  const first = (error.validation?.[0] ?? {}) as AjvLikeError;
  const base = (first.instancePath ?? '').replace(/^\//, '');
  const extra = first.params?.additionalProperty ?? first.params?.missingProperty;
  const field = [error.validationContext === 'body' ? '' : error.validationContext, base, extra]
    .filter((part) => typeof part === 'string' && part.length > 0)
    .join('/');
  const name =
    field || (error.validationContext === 'body' ? '(body)' : (error.validationContext ?? 'request'));
  const detail =
    first.keyword === 'additionalProperties'
      ? `unknown field "${name}"`
      : first.keyword === 'required'
        ? `${name} is required`
        : `${name} ${allowedValuesMessage(error.validation ?? []) ?? first.message ?? 'is invalid'}`;
  return problemFor('validation_failed', detail, name);
}

/** What a thrown error becomes on the wire: never a stack trace, SQL or internal name. */
export function problemFromError(error: unknown): { problem: Problem; unexpected: boolean } {
  if (isTenantryError(error)) {
    const problem = problemFor(error.code, error.message, error.field);
    return {
      problem:
        error.retryAfterSeconds === undefined ? problem : { ...problem, retryAfter: error.retryAfterSeconds },
      unexpected: false,
    };
  }
  // A value PostgreSQL refuses (class 22, data exception: a NUL in text, a date it cannot hold)
  // came from the request: a bad input anywhere it was not checked before, never a server error.
  const sqlState = sqlStateOf(error);
  if (sqlState?.startsWith('22')) {
    return {
      problem: problemFor('validation_failed', 'a value is out of range or malformed'),
      unexpected: false,
    };
  }
  // A cancelled statement is the tenant's statement timeout.
  if (sqlState === SqlState.QUERY_CANCELED) {
    return {
      problem: problemFor('unavailable', 'the query took longer than the tenant statement timeout'),
      unexpected: false,
    };
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) return { problem: validationProblem(fastifyError), unexpected: false };
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return {
        problem: problemFor('payload_too_large', 'the request body is larger than allowed'),
        unexpected: false,
      };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return {
        problem: problemFor('unsupported_media_type', 'send the body as application/json'),
        unexpected: false,
      };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return {
        problem: problemFor('validation_failed', 'the JSON body is empty', '(body)'),
        unexpected: false,
      };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return {
        problem: problemFor('validation_failed', 'the body is not valid JSON', '(body)'),
        unexpected: false,
      };
  }
  const status = fastifyError.statusCode;
  if (status === 400 && error instanceof SyntaxError) {
    return {
      problem: problemFor('validation_failed', 'the body is not valid JSON', '(body)'),
      unexpected: false,
    };
  }
  if (status === 413)
    return {
      problem: problemFor('payload_too_large', 'the request is larger than allowed'),
      unexpected: false,
    };
  if (status === 415)
    return {
      problem: problemFor('unsupported_media_type', 'send the body as application/json'),
      unexpected: false,
    };
  if (status !== undefined && status >= 400 && status < 500) {
    return { problem: problemFor('validation_failed', 'the request is malformed'), unexpected: false };
  }
  if (status === 503)
    return { problem: problemFor('unavailable', 'the service is not available'), unexpected: false };
  return { problem: problemFor('internal', 'an internal error occurred'), unexpected: true };
}

export function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: Problem): FastifyReply {
  if (problem.status === 401) reply.header('www-authenticate', 'Bearer');
  if (problem.retryAfter !== undefined) reply.header('retry-after', String(problem.retryAfter));
  return reply
    .code(problem.status)
    .type('application/problem+json')
    .send({ ...problem, requestId: request.id });
}
