import { ROW_SCHEMA, SHARED_SCHEMA } from '../entities/entity-db.js';
import type { Tenant } from '../tenants/tenant.js';

export { ROW_SCHEMA, SHARED_SCHEMA };

const TENANT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function compactId(tenantId: string): string {
  if (!TENANT_ID.test(tenantId)) throw new Error('not a tenant id');
  return tenantId.replaceAll('-', '');
}

/** The schema of a `schema` tenant: derived from its id, never from user text. */
export function tenantSchemaName(tenantId: string): string {
  return `t_${compactId(tenantId)}`;
}

/** The database of a `database` tenant: derived from its id, never from user text. */
export function tenantDatabaseName(tenantId: string): string {
  return `tenantry_${compactId(tenantId)}`;
}

/** Where a tenant's entity tables live. */
export interface TenantPlacement {
  readonly tenantId: string;
  /** Schema holding its tables (in its own database for `database` tenants). */
  readonly schema: string;
  /** Its own database, for `database` tenants. */
  readonly database: string | undefined;
  /** The database server of its own database (`main` unless placed elsewhere). */
  readonly server: string | undefined;
}

export function placementOf(
  tenant: Pick<Tenant, 'id' | 'isolation'> & { readonly server?: string | null },
): TenantPlacement {
  switch (tenant.isolation) {
    case 'row':
      return { tenantId: tenant.id, schema: ROW_SCHEMA, database: undefined, server: undefined };
    case 'schema':
      return {
        tenantId: tenant.id,
        schema: tenantSchemaName(tenant.id),
        database: undefined,
        server: undefined,
      };
    case 'database':
      return {
        tenantId: tenant.id,
        schema: ROW_SCHEMA,
        database: tenantDatabaseName(tenant.id),
        server: tenant.server ?? 'main',
      };
  }
}

/** Where a database tenant's database is, for the pools. */
export function databaseLocation(placement: TenantPlacement): { server: string; database: string } {
  if (!placement.database) throw new Error('not a database tenant');
  return { server: placement.server ?? 'main', database: placement.database };
}
