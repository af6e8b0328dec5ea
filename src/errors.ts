/**
 * The one catalogue of error codes. Each code keeps its HTTP status and title forever,
 * so clients can match on `code` (RFC 9457 problem details carry it as a member).
 */
export const errorCatalogue = {
  tenant_not_found: { status: 404, title: 'Tenant not found' },
  tenant_inactive: { status: 403, title: 'Tenant is inactive' },
  tenant_required: { status: 401, title: 'No tenant could be resolved from the request' },
  invalid_credentials: { status: 401, title: 'Invalid credentials' },
  unauthenticated: { status: 401, title: 'Authentication required' },
  cross_tenant: { status: 403, title: 'Credentials name different tenants' },
  forbidden: { status: 403, title: 'Forbidden' },
  feature_disabled: { status: 403, title: 'Feature not enabled for this tenant' },
  not_found: { status: 404, title: 'Not found' },
  conflict: { status: 409, title: 'Conflict' },
  cancelled: { status: 409, title: 'Cancelled' },
  validation_failed: { status: 400, title: 'Validation failed' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  rate_limited: { status: 429, title: 'Too many requests' },
  quota_exceeded: { status: 403, title: 'Quota exceeded' },
  unavailable: { status: 503, title: 'Service unavailable' },
  internal: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface TenantryErrorOptions {
  /** The input field the error is about, as a JSON pointer-ish path (`slug`, `hosts/0`). */
  readonly field?: string;
  readonly cause?: unknown;
  /** For rate_limited and unavailable: seconds before a retry may succeed (the Retry-After header). */
  readonly retryAfterSeconds?: number;
}

/** An expected failure with a stable code; its message is safe to show to the caller. */
export class TenantryError extends Error {
  readonly code: ErrorCode;
  readonly field: string | undefined;
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, options: TenantryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TenantryError';
    this.code = code;
    this.field = options.field;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return errorCatalogue[this.code].status;
  }
}

export function isTenantryError(error: unknown): error is TenantryError {
  return error instanceof TenantryError;
}

/** Raised for an invalid config file or environment; the CLI exits with code 2. */
export class ConfigError extends Error {
  readonly key: string;

  constructor(key: string, message: string) {
    super(`${key}: ${message}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

/** Normalise whatever a `catch` receives into an Error. */
export function toError(thrown: unknown): Error {
  if (thrown instanceof Error) return thrown;
  return new Error(typeof thrown === 'string' ? thrown : JSON.stringify(thrown));
}
