import { TenantryError } from '../errors.js';
import { sqlStateOf } from './sqlstate.js';

/** Seconds a client is asked to wait before retrying while the database is away. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/**
 * SQLSTATEs that mean the session is gone or cannot be had, not that the statement was wrong:
 * class 08 (connection exception), 53 (insufficient resources: too many connections, out of
 * memory or disk), 57P01-57P05 (administrator or crash shutdown, cannot connect now, database
 * dropped, idle session timeout) and 25P03 (the server ended a session idle in its transaction).
 */
function isUnavailableState(state: string): boolean {
  return state.startsWith('08') || state.startsWith('53') || /^57P0[1-5]$/.test(state) || state === '25P03';
}

/** Socket errors of a connection attempt or of an open connection. */
const SOCKET_ERRORS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** pg and pg-pool report a lost or unobtainable connection with these messages and no code. */
const DRIVER_MESSAGES = [
  'Connection terminated',
  'Client has encountered a connection error and is not queryable',
  'Client was closed and is not queryable',
  'timeout exceeded when trying to connect',
  'Cannot use a pool after calling end on the pool',
  'the connection was closed by the server',
];

/**
 * Whether `error` says the database could not be reached or dropped the connection (as opposed to
 * refusing the statement): such a request may succeed when retried, and is answered 503.
 */
export function isConnectionFailure(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (error instanceof TenantryError) return false;
  const state = sqlStateOf(error);
  if (state !== undefined) return isUnavailableState(state);
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && SOCKET_ERRORS.has(code)) return true;
  const message = (error as { message?: unknown }).message;
  return typeof message === 'string' && DRIVER_MESSAGES.some((known) => message.startsWith(known));
}

/** The error a caller sees when the database is away: `unavailable`, with a retry hint and the cause kept. */
export function databaseUnavailable(cause: unknown): TenantryError {
  return new TenantryError('unavailable', 'the database is not reachable; retry shortly', {
    cause,
    retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
  });
}

/** Rethrows `error`, as `unavailable` when it is a connection failure. */
export function rethrowConnectionFailure(error: unknown): never {
  throw isConnectionFailure(error) ? databaseUnavailable(error) : error;
}
