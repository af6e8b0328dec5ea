import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import { isUuid } from './slug.js';
import {
  type Plans,
  TENANT_COLUMNS,
  type Tenant,
  type TenantRow,
  type TenantStatus,
  tenantFromRow,
} from './tenant.js';

export interface ListTenantsOptions {
  readonly includeInactive?: boolean;
  readonly includeDeleted?: boolean;
  readonly limit?: number;
  /** The `next` cursor of the previous page. */
  readonly after?: string;
}

export interface TenantPage {
  readonly tenants: readonly Tenant[];
  readonly next: string | null;
}

/** Tenants a listing returns at most per page. */
export const MAX_TENANT_PAGE = 1000;

/** A text shown back in a message, cut to a length that cannot flood a log. */
export function clip(value: string, length = 80): string {
  const text = String(value);
  return text.length > length ? `${text.slice(0, length)}…` : text;
}

/**
 * Reads tenants from the control plane. `plans` is read at each use: a tenant read after a
 * config reload carries the new plans' values.
 */
export class TenantStore {
  readonly #db: Queryable;
  readonly #plans: () => Plans;

  constructor(db: Queryable, plans: () => Plans) {
    this.#db = db;
    this.#plans = plans;
  }

  /** Looks a tenant up by id or slug; deleted tenants only by id and only when asked for. */
  async get(idOrSlug: string, options: { includeDeleted?: boolean } = {}): Promise<Tenant> {
    const tenant = await this.find(idOrSlug, options);
    if (!tenant) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
    return tenant;
  }

  async find(idOrSlug: string, options: { includeDeleted?: boolean } = {}): Promise<Tenant | undefined> {
    if (typeof idOrSlug !== 'string' || idOrSlug.length === 0 || idOrSlug.length > 100) return undefined;
    if (isUuid(idOrSlug.toLowerCase())) {
      const tenant = await this.findById(idOrSlug.toLowerCase());
      return tenant && (tenant.status !== 'deleted' || options.includeDeleted) ? tenant : undefined;
    }
    return this.findBySlug(idOrSlug);
  }

  async findById(id: string, db: Queryable = this.#db): Promise<Tenant | undefined> {
    const { rows } = await db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.id = $1`,
      [id],
    );
    return rows[0] && tenantFromRow(rows[0], this.#plans());
  }

  /** The tenants of `ids` that exist, in no particular order (one query). */
  async findByIds(ids: readonly string[]): Promise<Tenant[]> {
    const { rows } = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.id = ANY($1::uuid[])`,
      [ids],
    );
    const plans = this.#plans();
    return rows.map((row) => tenantFromRow(row, plans));
  }

  async findBySlug(slug: string): Promise<Tenant | undefined> {
    const { rows } = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.slug = $1 AND t.status <> 'deleted'`,
      [slug],
    );
    return rows[0] && tenantFromRow(rows[0], this.#plans());
  }

  /** Soft-deleted tenants that had `slug` (freed by their deletion), newest first, at most `limit`. */
  async findDeletedBySlug(slug: string, limit: number): Promise<Tenant[]> {
    const { rows } = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t WHERE t.slug = $1 AND t.status = 'deleted'
        ORDER BY t.updated_at DESC LIMIT $2`,
      [slug, limit],
    );
    return rows.map((row) => tenantFromRow(row, this.#plans()));
  }

  /** The tenant id a registered host belongs to. */
  async tenantIdForHost(host: string): Promise<string | undefined> {
    const { rows } = await this.#db.query<{ tenant_id: string }>(
      'SELECT tenant_id FROM tenantry.tenant_hosts WHERE host = $1',
      [host],
    );
    return rows[0]?.tenant_id;
  }

  async list(options: ListTenantsOptions = {}): Promise<TenantPage> {
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_TENANT_PAGE) {
      throw new TenantryError('validation_failed', `limit must be an integer from 1 to ${MAX_TENANT_PAGE}`, {
        field: 'limit',
      });
    }
    if (options.after !== undefined && !isUuid(options.after)) {
      throw new TenantryError('validation_failed', 'after must be a cursor returned as next', {
        field: 'after',
      });
    }
    const statuses: TenantStatus[] = ['active'];
    if (options.includeInactive) statuses.push('inactive');
    if (options.includeDeleted) statuses.push('deleted');
    const { rows } = await this.#db.query<TenantRow>(
      `SELECT ${TENANT_COLUMNS} FROM tenantry.tenants t
        WHERE t.status = ANY($1::text[]) AND ($2::uuid IS NULL OR t.id > $2::uuid)
        ORDER BY t.id LIMIT $3`,
      [statuses, options.after ?? null, limit + 1],
    );
    const plans = this.#plans();
    const tenants = rows.slice(0, limit).map((row) => tenantFromRow(row, plans));
    return { tenants, next: rows.length > limit ? (tenants.at(-1)?.id ?? null) : null };
  }

  /** The tenant as the transaction sees it now. */
  async load(tx: Queryable, id: string): Promise<Tenant> {
    const tenant = await this.findById(id, tx);
    if (!tenant) throw new TenantryError('tenant_not_found', `no tenant "${id}"`);
    return tenant;
  }

  /** Locks the tenant row for the rest of the transaction; refuses tenants deleted meanwhile. */
  async lockLive(tx: Queryable, id: string, idOrSlug: string): Promise<Tenant> {
    const { rows } = await tx.query<{ id: string }>(
      `SELECT id FROM tenantry.tenants WHERE id = $1 AND status <> 'deleted' FOR UPDATE`,
      [id],
    );
    if (rows.length === 0) throw new TenantryError('tenant_not_found', `no tenant "${clip(idOrSlug)}"`);
    return this.load(tx, id);
  }
}
