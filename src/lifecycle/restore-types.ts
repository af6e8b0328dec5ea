import type { IssuedApiKey } from '../auth/api-key-store.js';
import type { IsolationLevel, Tenant } from '../tenants/tenant.js';

export interface RestoreOptions {
  /** The new tenant's slug (default: the archive's, when it is free). */
  readonly as?: string;
  /** Default: the archive's level (row when that cannot be had here, PGlite and database). */
  readonly isolation?: IsolationLevel;
  readonly server?: string;
  readonly key?: Buffer;
  /** Restore without the users whose emails other accounts hold (refused otherwise). */
  readonly skipConflictingUsers?: boolean;
  /**
   * Restore over an existing tenant (`as`, else the archive's own tenant): its rows become the
   * archive's, in one transaction; its users, keys and hosts stay as they are.
   */
  readonly replace?: boolean;
  /** What the restore is audited as (adopting a database is `tenant.adopt`); `tenant.restore` by default. */
  readonly auditAction?: string;
  /** Called after each piece of the archive goes in (the caller measures how far it is). */
  readonly onProgress?: () => void;
}

export interface RestoreReport {
  readonly tenant: Tenant;
  /** A new tenant's key, shown once; none when a tenant's rows were replaced. */
  readonly apiKey?: IssuedApiKey;
  readonly replaced: boolean;
  readonly rows: number;
  readonly entityVersion: { readonly archive: number; readonly restored: number };
  readonly users: number;
  readonly skippedUsers: readonly string[];
  readonly hosts: readonly string[];
  readonly skippedHosts: readonly string[];
  /** Records of the archive a new tenant does not get back (keys, clients, audit), by section. */
  readonly notRestored: Readonly<Record<string, number>>;
}
