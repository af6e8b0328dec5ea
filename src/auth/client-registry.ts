import { hash, randomBytes } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import type { ConnectionPool } from '../db/database.js';
import { TenantryError } from '../errors.js';
import { type ActionContext, type Actor, actorLabel } from '../runtime/actor.js';
import { auditedChange } from '../runtime/audited-change.js';
import type { ChangeBus } from '../runtime/change-bus.js';
import { isUuid } from './access-names.js';
import { hashSecret, verifySecret } from './api-key.js';
import { type Principal, requirePermission } from './delegation.js';

/** What a machine tells about itself when it connects or heartbeats. */
export interface ClientInventory {
  readonly name?: string;
  readonly hostname?: string;
  readonly os?: string;
  readonly osVersion?: string;
  readonly architecture?: string;
  readonly ipv4?: readonly string[];
  readonly ipv6?: readonly string[];
  readonly tags?: readonly string[];
  readonly version?: string;
}

export type ConnectionState = 'connected' | 'disconnected' | 'never';

/**
 * Checked once a client is known, before anything is written: the other credentials of the
 * request (its Host) must name the client's tenant. Throws to refuse.
 */
export type TenantAgreement = (tenantId: string | null, client: Actor) => Promise<void>;

export interface ClientView {
  readonly id: string;
  readonly clientId: string;
  readonly name: string;
  /** Null for an orphaned client (its tenant deleted, or none given). */
  readonly tenantId: string | null;
  readonly tenantSlug?: string | null;
  readonly orphaned: boolean;
  readonly state: ConnectionState;
  readonly inventory: ClientInventory;
  readonly connectedAt: Date | null;
  readonly lastSeenAt: Date | null;
  readonly lastAddress: string | null;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

export interface IssuedClient {
  readonly client: ClientView;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly warning: string;
}

export interface ClientConnection {
  /** Sent as `Authorization: Bearer` with each heartbeat. */
  readonly connectionToken: string;
  readonly clientId: string;
  readonly tenantId: string | null;
  readonly heartbeatSeconds: number;
}

interface ClientRow {
  [column: string]: unknown;
  id: string;
  client_id: string;
  name: string;
  tenant_id: string | null;
  tenant_slug: string | null;
  tenant_status: string | null;
  inventory: ClientInventory;
  connected_at: Date | string | null;
  last_seen_at: Date | string | null;
  last_address: string | null;
  created_at: Date | string;
  revoked_at: Date | string | null;
}

const CLIENT_ID_PATTERN = /^tnc_[0-9a-f]{16}$/;
const CONNECTION_TOKEN_PATTERN = /^tnh_[A-Za-z0-9_-]{43}$/;
export const HEARTBEAT_SECONDS = 30;
/** A client that has not been heard of for three heartbeats is disconnected. */
const CONNECTED_WITHIN_MS = 3 * HEARTBEAT_SECONDS * 1000;
export const CLIENT_SECRET_WARNING =
  'Store this client secret now: it is shown only once and cannot be retrieved later.';

const SELECT_CLIENTS = `SELECT c.id, c.client_id, c.name, c.tenant_id, t.slug AS tenant_slug, t.status AS tenant_status,
       c.inventory, c.connected_at, c.last_seen_at, c.last_address, c.created_at, c.revoked_at
  FROM tenantry.clients c LEFT JOIN tenantry.tenants t ON t.id = c.tenant_id`;

/**
 * Machine clients: credentials made by a tenant admin (or a global admin), the secret stored only
 * as a PBKDF2 hash and shown once. A client connects with its credentials and inventory, which
 * maps it to its tenant, then heartbeats with the connection token it got. A client whose tenant
 * is gone (or that never had one) is orphaned: no tenant lists it, only the admin listing does.
 */
export class ClientRegistry {
  readonly #db: ConnectionPool;
  readonly #bus: ChangeBus;
  readonly #iterations: number;
  #decoy: ReturnType<typeof hashSecret> | undefined;

  constructor(db: ConnectionPool, bus: ChangeBus, iterations: number) {
    this.#db = db;
    this.#bus = bus;
    this.#iterations = iterations;
  }

  /** A tenant admin's new client (clients:manage). */
  async create(principal: Principal, input: { name: string }): Promise<IssuedClient> {
    requirePermission(principal, 'clients:manage');
    return this.#create(principal.tenantId, input.name, principal.context);
  }

  /** An operator's new client, for a tenant or for none (orphaned until it is given one). */
  async createForOperator(
    tenantId: string | null,
    input: { name: string },
    context: ActionContext,
  ): Promise<IssuedClient> {
    return this.#create(tenantId, input.name, context);
  }

  async list(tenantId: string): Promise<ClientView[]> {
    const { rows } = await this.#db.query<ClientRow>(
      `${SELECT_CLIENTS} WHERE c.tenant_id = $1 AND t.status <> 'deleted' AND c.revoked_at IS NULL ORDER BY c.created_at`,
      [tenantId],
    );
    return rows.map((row) => clientView(row, false));
  }

  /** Every client with its tenant (global admins), or only the orphaned ones. */
  async listAll(options: { orphaned?: boolean } = {}): Promise<ClientView[]> {
    const { rows } = await this.#db.query<ClientRow>(
      `${SELECT_CLIENTS} WHERE ($1::boolean IS NOT TRUE OR c.tenant_id IS NULL OR t.status = 'deleted')
        ORDER BY c.created_at`,
      [options.orphaned ?? false],
    );
    return rows.map((row) => clientView(row, true));
  }

  async revoke(principal: Principal, id: string): Promise<void> {
    requirePermission(principal, 'clients:manage');
    if (!isUuid(id)) throw new TenantryError('not_found', 'no such client in this tenant');
    const audit = { action: 'client.revoke', tenantId: principal.tenantId, target: id };
    await auditedChange({ bus: this.#bus }, this.#db, principal.context, audit, async (tx) => {
      const { rowCount } = await tx.query(
        `UPDATE tenantry.clients SET revoked_at = now(), connection_token_hash = NULL
          WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL`,
        [id, principal.tenantId],
      );
      if (rowCount === 0) throw new TenantryError('not_found', 'no such client in this tenant');
    });
  }

  /**
   * A client presents its credentials and inventory. Every failure looks the same and costs one
   * slow hash. An orphaned client may connect (its inventory is kept for operators) but is
   * mapped to no tenant.
   */
  async connect(
    input: { clientId: string; clientSecret: string; inventory: ClientInventory },
    context: ActionContext,
    agrees: TenantAgreement = async () => undefined,
  ): Promise<ClientConnection> {
    const { rows } = CLIENT_ID_PATTERN.test(input.clientId)
      ? await this.#db.query<{
          id: string;
          salt: Buffer;
          hash: Buffer;
          iterations: number;
          tenant_id: string | null;
          tenant_status: string | null;
          revoked_at: unknown;
        }>(
          `SELECT c.id, c.salt, c.hash, c.iterations, c.tenant_id, t.status AS tenant_status, c.revoked_at
             FROM tenantry.clients c LEFT JOIN tenantry.tenants t ON t.id = c.tenant_id WHERE c.client_id = $1`,
          [input.clientId],
        )
      : { rows: [] };
    const row = rows[0];
    const stored =
      row && row.revoked_at === null
        ? { salt: Buffer.from(row.salt), hash: Buffer.from(row.hash), iterations: row.iterations }
        : await this.#decoyHash();
    const valid =
      (await verifySecret(input.clientSecret, stored)) && row !== undefined && row.revoked_at === null;
    if (!valid || !row)
      throw new TenantryError('invalid_credentials', 'the client credentials are not valid');
    if (row.tenant_status === 'inactive')
      throw new TenantryError('tenant_inactive', 'the tenant of this client is inactive');
    const tenantId = row.tenant_status === 'active' ? row.tenant_id : null;
    await agrees(tenantId, { kind: 'client', id: input.clientId });
    const token = `tnh_${randomBytes(32).toString('base64url')}`;
    const asClient = { ...context, actor: { kind: 'client' as const, id: input.clientId } };
    const audit = { action: 'client.connect', tenantId: tenantId ?? undefined, target: row.id };
    await auditedChange({ bus: this.#bus }, this.#db, asClient, audit, async (tx) => {
      await tx.query(
        `UPDATE tenantry.clients SET inventory = $2::jsonb, connection_token_hash = $3, connected_at = now(),
                last_seen_at = now(), last_address = $4
          WHERE id = $1`,
        [
          row.id,
          JSON.stringify(input.inventory),
          hash('sha256', token, 'buffer'),
          context.clientAddress ?? null,
        ],
      );
    });
    return {
      connectionToken: token,
      clientId: input.clientId,
      tenantId,
      heartbeatSeconds: HEARTBEAT_SECONDS,
    };
  }

  /** Notes that a connected client is alive (and, optionally, its changed inventory). */
  async heartbeat(
    token: string,
    inventory: ClientInventory | undefined,
    context: ActionContext,
    agrees: TenantAgreement = async () => undefined,
  ): Promise<{ heartbeatSeconds: number }> {
    if (!CONNECTION_TOKEN_PATTERN.test(token))
      throw new TenantryError('invalid_credentials', 'the connection token is not valid');
    const tokenHash = hash('sha256', token, 'buffer');
    const { rows } = await this.#db.query<{
      client_id: string;
      tenant_id: string | null;
      tenant_status: string | null;
    }>(
      `SELECT c.client_id, c.tenant_id, t.status AS tenant_status
         FROM tenantry.clients c LEFT JOIN tenantry.tenants t ON t.id = c.tenant_id
        WHERE c.connection_token_hash = $1 AND c.revoked_at IS NULL`,
      [tokenHash],
    );
    const row = rows[0];
    if (!row)
      throw new TenantryError('invalid_credentials', 'the connection token is not valid: connect again');
    await agrees(row.tenant_status === 'active' ? row.tenant_id : null, {
      kind: 'client',
      id: row.client_id,
    });
    const { rowCount } = await this.#db.query(
      `UPDATE tenantry.clients SET last_seen_at = now(), last_address = $2,
              inventory = coalesce($3::jsonb, inventory)
        WHERE connection_token_hash = $1 AND revoked_at IS NULL`,
      [tokenHash, context.clientAddress ?? null, inventory === undefined ? null : JSON.stringify(inventory)],
    );
    if (rowCount === 0)
      throw new TenantryError('invalid_credentials', 'the connection token is not valid: connect again');
    return { heartbeatSeconds: HEARTBEAT_SECONDS };
  }

  async #create(tenantId: string | null, name: string, context: ActionContext): Promise<IssuedClient> {
    const clientId = `tnc_${randomBytes(8).toString('hex')}`;
    const secret = randomBytes(32).toString('base64url');
    const stored = await hashSecret(secret, this.#iterations);
    const id = uuidv7();
    // The client and its audit entry commit together: a refused audit entry leaves no client.
    const audit = {
      action: 'client.create',
      tenantId: tenantId ?? undefined,
      target: id,
      details: { clientId, name },
    };
    const rows = await auditedChange({ bus: this.#bus }, this.#db, context, audit, async (tx) => {
      await tx.query(
        `INSERT INTO tenantry.clients (id, client_id, tenant_id, name, salt, hash, iterations, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [
          id,
          clientId,
          tenantId,
          name,
          stored.salt,
          stored.hash,
          stored.iterations,
          actorLabel(context.actor),
        ],
      );
      return (await tx.query<ClientRow>(`${SELECT_CLIENTS} WHERE c.id = $1`, [id])).rows;
    });
    return {
      client: clientView(rows[0]!, false),
      clientId,
      clientSecret: secret,
      warning: CLIENT_SECRET_WARNING,
    };
  }

  #decoyHash(): ReturnType<typeof hashSecret> {
    this.#decoy ??= hashSecret(randomBytes(32).toString('base64url'), this.#iterations);
    return this.#decoy;
  }
}

function clientView(row: ClientRow, withTenant: boolean): ClientView {
  const orphaned = row.tenant_id === null || row.tenant_status === 'deleted';
  const lastSeen = row.last_seen_at === null ? null : new Date(row.last_seen_at);
  const state: ConnectionState =
    lastSeen === null
      ? 'never'
      : Date.now() - lastSeen.getTime() <= CONNECTED_WITHIN_MS && row.revoked_at === null
        ? 'connected'
        : 'disconnected';
  return Object.freeze({
    id: row.id,
    clientId: row.client_id,
    name: row.name,
    tenantId: orphaned ? null : row.tenant_id,
    ...(withTenant ? { tenantSlug: orphaned ? null : row.tenant_slug } : {}),
    orphaned,
    state,
    inventory: row.inventory ?? {},
    connectedAt: row.connected_at === null ? null : new Date(row.connected_at),
    lastSeenAt: lastSeen,
    lastAddress: row.last_address,
    createdAt: new Date(row.created_at),
    revokedAt: row.revoked_at === null ? null : new Date(row.revoked_at),
  });
}
