/** Where cached values live: this process, or Redis shared by every process. */
export type CacheStoreKind = 'memory' | 'redis';

/**
 * Raw storage under the tenant-scoped cache: opaque texts by tenant and key. A store never
 * throws for being unreachable: `get` answers undefined ("cannot say") and the writes false
 * ("skipped"), so a request never fails because its cache did.
 */
export interface CacheStore {
  readonly kind: CacheStoreKind;
  /** The stored text, null when there is none, undefined when the store cannot answer now. */
  get(tenantId: string, key: string): Promise<string | null | undefined> | string | null | undefined;
  /** False when the store could not take the value now. */
  set(tenantId: string, key: string, text: string, ttlSeconds: number): Promise<boolean> | boolean;
  del(tenantId: string, key: string): Promise<boolean> | boolean;
  /** Forgets every value of the tenant, in O(1): the tenant's namespace gets a new generation. */
  drop(tenantId: string): Promise<boolean> | boolean;
}
