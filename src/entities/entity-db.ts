import type { Queryable, QueryResult, Row } from '../db/database.js';

/** Schema of the row-level tenant tables: shared by row tenants, `tenant_id` and row-level security. */
export const ROW_SCHEMA = 'app';
/** Schema of shared entities: tenants read them, only global admins write them. */
export const SHARED_SCHEMA = 'shared';

/**
 * What entity queries run on: a handle bound to one tenant, whose statements all run in that
 * tenant's transaction (the isolation layer's `TenantDb` is one).
 */
export interface EntityDb {
  readonly tenantId: string;
  /** Where the tenant's tables are: the schema holding them (in its own database for database tenants). */
  readonly placement: { readonly schema: string };
  query<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Reads shared entities (schema `shared`, read-only for tenants). */
  queryShared<R extends Row = Row>(sql: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}
