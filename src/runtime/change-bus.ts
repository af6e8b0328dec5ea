import type { Database, Listener, Queryable } from '../db/database.js';

/** Something cached elsewhere became stale. */
export type Change =
  | { readonly kind: 'tenant'; readonly tenantId: string }
  | { readonly kind: 'key'; readonly tenantId: string; readonly keyId: string }
  /** Entity versions or the versions of shared tables changed (a migration ran). */
  | { readonly kind: 'entities' }
  /** Who may do what in a tenant changed: users, roles, groups, memberships, sessions. */
  | { readonly kind: 'access'; readonly tenantId: string | null; readonly userId?: string }
  /**
   * A tenant's cached value (or, without key, all of them: a clear, or the tenant was deleted) is
   * gone. `origin` names the cache that sent it (it applied the change already).
   */
  | { readonly kind: 'cache'; readonly tenantId: string; readonly key?: string; readonly origin?: string }
  /** A database server's connection strings changed: its cached URLs and pools are stale. */
  | { readonly kind: 'server'; readonly name: string };

export type ChangeHandler = (change: Change | 'all') => void;

const CHANNEL = 'tenantry_changes';

function parseChange(payload: string): Change | undefined {
  try {
    const value = JSON.parse(payload) as Partial<Change>;
    if (value.kind === 'tenant' && typeof value.tenantId === 'string')
      return { kind: 'tenant', tenantId: value.tenantId };
    if (value.kind === 'entities') return { kind: 'entities' };
    if (value.kind === 'server' && typeof value.name === 'string')
      return { kind: 'server', name: value.name };
    if (value.kind === 'cache' && typeof value.tenantId === 'string') {
      return {
        kind: 'cache',
        tenantId: value.tenantId,
        ...(typeof value.key === 'string' ? { key: value.key } : {}),
        ...(typeof value.origin === 'string' ? { origin: value.origin } : {}),
      };
    }
    if (value.kind === 'access' && (typeof value.tenantId === 'string' || value.tenantId === null)) {
      return typeof value.userId === 'string'
        ? { kind: 'access', tenantId: value.tenantId, userId: value.userId }
        : { kind: 'access', tenantId: value.tenantId };
    }
    if (value.kind === 'key' && typeof value.tenantId === 'string' && typeof value.keyId === 'string') {
      return { kind: 'key', tenantId: value.tenantId, keyId: value.keyId };
    }
  } catch {
    // A payload we do not understand comes from a newer version: treat it as "everything changed".
  }
  return undefined;
}

/**
 * Tells every process that cached state changed. A change is announced with `pg_notify` inside
 * the writing transaction (so it is delivered only if the write commits) and applied locally
 * right after commit, so the writing process never serves stale data even for a moment.
 * While the listening connection is down, `reliable` is false and caches must not be used:
 * notifications may be lost then.
 */
export class ChangeBus {
  readonly #handlers = new Set<ChangeHandler>();
  #listener: Listener | undefined;
  #reliable = true;

  get reliable(): boolean {
    return this.#reliable;
  }

  subscribe(handler: ChangeHandler): () => void {
    this.#handlers.add(handler);
    return () => this.#handlers.delete(handler);
  }

  async start(db: Database): Promise<void> {
    if (!db.shared) return;
    this.#listener = await db.listen(CHANNEL, {
      onNotification: (payload) => this.#emit(parseChange(payload) ?? 'all'),
      onGap: (connected) => {
        this.#reliable = connected;
        this.#emit('all');
      },
    });
  }

  /** Queues the announcement in the transaction; call `applied` after it commits. */
  async announce(tx: Queryable, change: Change): Promise<void> {
    await tx.query('SELECT pg_notify($1, $2)', [CHANNEL, JSON.stringify(change)]);
  }

  /** Applies a committed change in this process at once. */
  applied(change: Change): void {
    this.#emit(change);
  }

  #emit(change: Change | 'all'): void {
    for (const handler of this.#handlers) handler(change);
  }

  async close(): Promise<void> {
    await this.#listener?.close();
    this.#listener = undefined;
  }
}
