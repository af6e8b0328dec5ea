/** PostgreSQL SQLSTATE codes the engine reacts to, by name. */
export const SqlState = {
  UNIQUE_VIOLATION: '23505',
  FOREIGN_KEY_VIOLATION: '23503',
  CHECK_VIOLATION: '23514',
  NOT_NULL_VIOLATION: '23502',
  INSUFFICIENT_PRIVILEGE: '42501',
  UNDEFINED_TABLE: '42P01',
  INVALID_SCHEMA_NAME: '3F000',
  INVALID_CATALOG_NAME: '3D000',
  ADMIN_SHUTDOWN: '57P01',
  QUERY_CANCELED: '57014',
  LOCK_NOT_AVAILABLE: '55P03',
  DUPLICATE_OBJECT: '42710',
  DUPLICATE_DATABASE: '42P04',
  INVALID_TEXT_REPRESENTATION: '22P02',
  /** Tenantry's own: a write to the old copy of a moved tenant (raised by the move's capture trigger). */
  TENANT_SEALED: 'TYM01',
} as const;

export type SqlStateName = keyof typeof SqlState;

interface PgErrorShape {
  code?: unknown;
  constraint?: unknown;
}

/** The SQLSTATE of a driver error (pg and PGlite both expose `code`), or undefined. */
export function sqlStateOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as PgErrorShape).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export function isSqlState(error: unknown, name: SqlStateName): boolean {
  return sqlStateOf(error) === SqlState[name];
}

/** The violated constraint's name, when the driver reports it. */
export function constraintOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const constraint = (error as PgErrorShape).constraint;
  return typeof constraint === 'string' ? constraint : undefined;
}
