/** Tenantry's version: archives record it, OpenAPI and `tenantry --version` show it. */
export const TENANTRY_VERSION = '0.1.0';
