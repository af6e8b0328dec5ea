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

/** What a socket error code means, in words an operator reads. */
const SOCKET_REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  EHOSTDOWN: 'host down',
  ENETUNREACH: 'network unreachable',
  ENETDOWN: 'network down',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed, try again',
};

/** `host:port` of a connection string, never its user or password. */
export function serverAddress(url: string): string {
  try {
    const parsed = new URL(url);
    // A socket directory goes in `?host=` (postgres:///app?host=/run/postgresql).
    const host = parsed.hostname || parsed.searchParams.get('host') || 'localhost';
    return `${host}:${parsed.port || '5432'}`;
  } catch {
    return 'the configured server';
  }
}

/**
 * The database of a configured URL cannot be reached: the message names the setting the URL came
 * from and the server's address (never the password), and why, for the operator to fix.
 */
export class DatabaseUnreachableError extends TenantryError {
  readonly setting: string;
  readonly address: string;

  constructor(setting: string, url: string, cause: unknown) {
    const address = serverAddress(url);
    super('unavailable', `cannot reach PostgreSQL at ${address} (${setting}): ${reasonOf(cause)}`, {
      cause,
      retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
    });
    this.name = 'DatabaseUnreachableError';
    this.setting = setting;
    this.address = address;
  }
}

function reasonOf(cause: unknown): string {
  const code = (cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && SOCKET_REASONS[code] !== undefined) return SOCKET_REASONS[code];
  const message = cause instanceof Error ? cause.message : String(cause);
  return message.startsWith('timeout exceeded') ? 'connection timed out' : message;
}
