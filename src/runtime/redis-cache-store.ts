import { randomBytes } from 'node:crypto';
import type { CacheStore } from './cache-store.js';
import type { RedisConnection } from './redis-connection.js';

/**
 * KEYS[1] is the tenant's generation key; a value lives at `<KEYS[1]>:<generation>:<key>`. No
 * generation means no values (a dropped tenant, or an evicted generation key): a miss, never an
 * older generation's value. The keys share the `{tenant id}` hash tag, so they sit in one slot.
 */
const GET_SCRIPT = `
local generation = redis.call('GET', KEYS[1])
if not generation then return false end
return redis.call('GET', KEYS[1] .. ':' .. generation .. ':' .. ARGV[1])
`;

/** ARGV: key, text, ttl seconds, a fresh generation (used when there is none), generation ttl. */
const SET_SCRIPT = `
local generation = redis.call('GET', KEYS[1])
if not generation then generation = ARGV[4] end
redis.call('SET', KEYS[1], generation, 'EX', ARGV[5])
redis.call('SET', KEYS[1] .. ':' .. generation .. ':' .. ARGV[1], ARGV[2], 'EX', ARGV[3])
return 1
`;

const DEL_SCRIPT = `
local generation = redis.call('GET', KEYS[1])
if not generation then return 0 end
return redis.call('DEL', KEYS[1] .. ':' .. generation .. ':' .. ARGV[1])
`;

type Script = (...args: (string | number)[]) => Promise<unknown>;

/**
 * The store shared by every process: values in Redis under `<prefix>cache:{<tenant id>}`, one
 * script call per operation. Dropping a tenant deletes its generation key (one command, however
 * many values it had); the orphaned values expire with their TTL. The generation key outlives
 * every value written under it (its TTL is the longest a value may have, renewed on each write).
 * While Redis is down, reads answer "cannot say" and writes are skipped at once.
 */
export class RedisCacheStore implements CacheStore {
  readonly kind = 'redis';
  readonly #redis: RedisConnection | undefined;
  readonly #prefix: string;
  readonly #maxTtlSeconds: number;
  readonly #process = randomBytes(6).toString('hex');
  #generations = 0;

  /** Without a connection (an engine opened without Redis, like the CLI's) Redis is "down". */
  constructor(redis: RedisConnection | undefined, options: { prefix: string; maxTtlSeconds: number }) {
    this.#redis = redis;
    this.#prefix = `${options.prefix}cache:`;
    this.#maxTtlSeconds = options.maxTtlSeconds;
    redis?.client.defineCommand('tenantryCacheGet', { numberOfKeys: 1, lua: GET_SCRIPT });
    redis?.client.defineCommand('tenantryCacheSet', { numberOfKeys: 1, lua: SET_SCRIPT });
    redis?.client.defineCommand('tenantryCacheDel', { numberOfKeys: 1, lua: DEL_SCRIPT });
  }

  async get(tenantId: string, key: string): Promise<string | null | undefined> {
    const redis = this.#redis;
    if (!redis?.up) return undefined;
    try {
      const text = await this.#script(redis, 'tenantryCacheGet')(this.generationKey(tenantId), key);
      return typeof text === 'string' ? text : null;
    } catch {
      return undefined;
    }
  }

  async set(tenantId: string, key: string, text: string, ttlSeconds: number): Promise<boolean> {
    // A generation unique to this process and call: a dropped tenant never gets an old one back.
    const fresh = `${this.#process}${(this.#generations++).toString(36)}`;
    return this.#run((redis) =>
      this.#script(redis, 'tenantryCacheSet')(
        this.generationKey(tenantId),
        key,
        text,
        ttlSeconds,
        fresh,
        this.#maxTtlSeconds,
      ),
    );
  }

  async del(tenantId: string, key: string): Promise<boolean> {
    return this.#run((redis) => this.#script(redis, 'tenantryCacheDel')(this.generationKey(tenantId), key));
  }

  async drop(tenantId: string): Promise<boolean> {
    return this.#run((redis) => redis.client.del(this.generationKey(tenantId)));
  }

  /** `{...}` is a Redis Cluster hash tag: a tenant's keys share a slot. */
  generationKey(tenantId: string): string {
    return `${this.#prefix}{${tenantId}}`;
  }

  async #run(command: (redis: RedisConnection) => Promise<unknown>): Promise<boolean> {
    const redis = this.#redis;
    if (!redis?.up) return false;
    try {
      await command(redis);
      return true;
    } catch {
      return false;
    }
  }

  #script(
    redis: RedisConnection,
    name: 'tenantryCacheGet' | 'tenantryCacheSet' | 'tenantryCacheDel',
  ): Script {
    const client = redis.client as unknown as Record<typeof name, Script>;
    return client[name].bind(redis.client);
  }
}
