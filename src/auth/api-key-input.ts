import Type from 'typebox';
import { isCalendarDate } from '../calendar.js';
import { TenantryError } from '../errors.js';
import { validate } from '../validation.js';

/** A further key of a tenant: an optional name, and an optional expiry in the future. */
export const CreateApiKeyInputSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    /** ISO 8601 date-time with offset (or a date: midnight UTC) after which the key no longer authenticates. */
    expiresAt: Type.Optional(Type.String({ minLength: 1, maxLength: 40 })),
    /** What the key may do; absent: every tenant permission (an operator's key) or its creator's. */
    permissions: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { maxItems: 1000 })),
  },
  { additionalProperties: false },
);

export interface ApiKeyRequest {
  readonly name: string;
  readonly expiresAt: Date | null;
  /** Null: not restricted by the key itself. */
  readonly permissions: readonly string[] | null;
}

/** The public id of a key, as listings show it (`keyId`): 16 hex characters. */
export const KEY_ID_PATTERN = /^[0-9a-f]{16}$/;

/** The last instant an expiry may name: what a four-digit year can write. */
const LATEST_EXPIRY = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** A date (midnight UTC), or a date-time with its offset: never the server's local time. */
const ISO_DATE_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2}))?$/i;

/** Checks a key creation; the expiry must be an ISO 8601 date-time in the future. */
export function parseApiKeyRequest(input: unknown, now = Date.now()): ApiKeyRequest {
  const data = validate(CreateApiKeyInputSchema, input ?? {});
  const name = (data.name ?? 'unnamed').trim();
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (name.length === 0 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new TenantryError('validation_failed', 'name must be non-blank text without control characters', {
      field: 'name',
    });
  }
  const permissions = data.permissions === undefined ? null : [...new Set(data.permissions)].sort();
  if (data.expiresAt === undefined) return { name, expiresAt: null, permissions };
  const expiresAt = new Date(data.expiresAt);
  if (
    !ISO_DATE_TIME.test(data.expiresAt) ||
    Number.isNaN(expiresAt.getTime()) ||
    !isCalendarDate(data.expiresAt)
  ) {
    throw new TenantryError(
      'validation_failed',
      'expiresAt must be an ISO 8601 date, or date-time with Z or an offset',
      {
        field: 'expiresAt',
      },
    );
  }
  if (expiresAt.getTime() <= now) {
    throw new TenantryError('validation_failed', 'expiresAt must be in the future', { field: 'expiresAt' });
  }
  // An offset can push 9999-12-31 into year 10000, which listings cannot write as an ISO date-time.
  if (expiresAt.getTime() > LATEST_EXPIRY) {
    throw new TenantryError('validation_failed', 'expiresAt must be in or before the year 9999', {
      field: 'expiresAt',
    });
  }
  return { name, expiresAt, permissions };
}

export function checkKeyId(keyId: unknown): string {
  if (typeof keyId !== 'string' || !KEY_ID_PATTERN.test(keyId)) {
    throw new TenantryError('validation_failed', 'keyId must be the 16 hex characters a key listing shows', {
      field: 'keyId',
    });
  }
  return keyId;
}
