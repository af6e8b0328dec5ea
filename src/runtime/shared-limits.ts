import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { type BucketPolicy, bucketKey } from './token-bucket.js';

/**
 * Per-tenant limits shared by every process through Redis, at a cost that does not grow with
 * traffic: a process takes tokens from a tenant's bucket and slots under its concurrency cap in
 * small batches (one script call), then spends them locally, synchronously. Low limits get
 * batches of one, so they stay exact across processes; high limits, where a round trip per
 * request would be the cost, get batches of up to 100 tokens (2 % of a second's worth) and
 * 1/8 of the cap in slots.
 *
 * - Tokens taken but not spent within 250 ms are dropped: a tenant can be under-served by at most
 *   one batch per process per 250 ms, never over-served.
 * - Slots are leased per process (a hash field `<process>` = `<count>:<expiry>`), re-asserted every
 *   third of the lease; a process that dies frees its slots when its lease ends. A process gives
 *   back slots it no longer needs beyond one batch of headroom (immediately for batches of one),
 *   and all of a tenant's once none of its requests is in flight here (within a second).
 * - A rate refusal is remembered until the time Redis gave for the next token: tokens only appear
 *   with time, in every process alike, so until then the answer cannot change, and a tenant
 *   flooding far over its limit costs one script call per token instead of one per request.
 */
export interface SharedDecision {
  readonly allowed: boolean;
  readonly reason?: 'rate' | 'concurrency';
  readonly remaining: number;
  readonly resetMs: number;
  readonly retryMs: number;
  /** Frees the request's slot (a no-op without a cap). */
  readonly release: () => void;
}

// KEYS: bucket, slots. ARGV: interval ms (0: no rate), burst, tokens wanted, cap (-1: none),
// slots wanted, process, lease ms. Returns {status (1 granted, 0 rate, -1 concurrency),
// tokens left in the bucket, ms until it is full, ms until a token is free, tokens taken, slots granted}.
const TAKE_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval, burst, wantTokens = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, wantSlots, process, lease = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local grantSlots, own = 0, 0
if cap >= 0 and wantSlots > 0 then
  local fields = redis.call('HGETALL', KEYS[2])
  local used = 0
  for i = 1, #fields, 2 do
    local count, expires = string.match(fields[i + 1], '^(%d+):(%d+)$')
    count, expires = tonumber(count), tonumber(expires)
    if expires == nil or expires <= now then
      redis.call('HDEL', KEYS[2], fields[i])
    else
      used = used + count
      if fields[i] == process then own = count end
    end
  end
  grantSlots = math.min(wantSlots, cap - used)
  if grantSlots <= 0 then return {-1, 0, 0, 1000, 0, 0} end
end
local took, remaining, reset = 0, -1, 0
if interval > 0 and wantTokens > 0 then
  local tat = tonumber(redis.call('GET', KEYS[1]) or now)
  if tat < now then tat = now end
  local available = math.floor((now - tat + burst * interval) / interval)
  if available > burst then available = burst end
  if available < 1 then
    return {0, 0, math.ceil(tat - now), math.ceil(tat + interval - burst * interval - now), 0, 0}
  end
  took = math.min(wantTokens, available)
  local nextTat = tat + took * interval
  redis.call('SET', KEYS[1], tostring(nextTat), 'PX', math.max(1, math.ceil(nextTat - now)))
  remaining = available - took
  reset = math.ceil(nextTat - now)
end
if grantSlots > 0 then
  redis.call('HSET', KEYS[2], process, (own + grantSlots) .. ':' .. (now + lease))
  redis.call('PEXPIRE', KEYS[2], lease)
end
return {1, remaining, reset, 0, took, grantSlots}
`;

// KEYS: slots. ARGV: process, count now held (0: none), lease ms.
const HOLD_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local count = tonumber(ARGV[2])
if count <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], count .. ':' .. (now + tonumber(ARGV[3])))
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
`;

type TakeCommand = (
  bucket: string,
  slots: string,
  intervalMs: number,
  burst: number,
  tokens: number,
  cap: number,
  slotsWanted: number,
  process: string,
  leaseMs: number,
) => Promise<[number, number, number, number, number, number]>;
type HoldCommand = (slots: string, process: string, count: number, leaseMs: number) => Promise<number>;

const TOKEN_POOL_MS = 250;
/** How often slots of tenants idle in this process are given back (at most this long held idle). */
const IDLE_RELEASE_MS = 1_000;

interface TokenPool {
  count: number;
  expiresAt: number;
  remaining: number;
  resetAt: number;
}

interface SlotPool {
  held: number;
  inFlight: number;
  batch: number;
}

export function tokenBatch(policy: BucketPolicy): number {
  const rate = 1000 / policy.intervalMs;
  return Math.max(1, Math.min(100, Math.floor(rate * 0.02), Math.floor(policy.burst / 10)));
}

export function slotBatch(cap: number): number {
  return Math.max(1, Math.min(64, Math.floor(cap / 8)));
}

export class SharedLimits {
  readonly #client: Redis;
  readonly #prefix: string;
  readonly #leaseMs: number;
  readonly #now: () => number;
  readonly #process = randomUUID();
  readonly #tokens = new Map<string, TokenPool>();
  readonly #slots = new Map<string, SlotPool>();
  readonly #refills = new Map<string, Promise<SharedDecision | undefined>>();
  /** Tenants whose slot count changed while a call for them ran: written once it is over. */
  readonly #holdAfterRefill = new Set<string>();
  /** Buckets Redis refused, by bucket key: no token before `until`, full again at `resetAt`. */
  readonly #refusedUntil = new Map<string, { readonly until: number; readonly resetAt: number }>();
  readonly #heartbeat: NodeJS.Timeout;
  readonly #idleCheck: NodeJS.Timeout;

  constructor(client: Redis, options: { prefix: string; leaseMs: number; now?: () => number }) {
    this.#client = client;
    this.#prefix = options.prefix;
    this.#leaseMs = options.leaseMs;
    this.#now = options.now ?? Date.now;
    client.defineCommand('tenantryTake', { numberOfKeys: 2, lua: TAKE_SCRIPT });
    client.defineCommand('tenantryHold', { numberOfKeys: 1, lua: HOLD_SCRIPT });
    this.#heartbeat = setInterval(() => this.#reassert(), Math.max(1000, Math.floor(this.#leaseMs / 3)));
    this.#heartbeat.unref();
    this.#idleCheck = setInterval(() => this.#releaseIdle(), IDLE_RELEASE_MS);
    this.#idleCheck.unref();
  }

  /** Spends from this process's batches when it can (synchronously); otherwise takes a batch. */
  admit(
    tenantId: string,
    policy: BucketPolicy | undefined,
    cap: number | undefined,
    key: string | undefined = policy && bucketKey(tenantId, policy),
  ): SharedDecision | Promise<SharedDecision> {
    const spent = this.#spend(tenantId, policy, cap, key);
    if (spent) return spent;
    return this.#refill(tenantId, policy, cap, key).then(
      (refused) => refused ?? this.admit(tenantId, policy, cap, key),
    );
  }

  close(): void {
    clearInterval(this.#heartbeat);
    clearInterval(this.#idleCheck);
  }

  #spend(
    tenantId: string,
    policy: BucketPolicy | undefined,
    cap: number | undefined,
    key: string | undefined,
  ): SharedDecision | undefined {
    const now = this.#now();
    const pool = key === undefined ? undefined : this.#tokens.get(key);
    const tokenReady = !policy || (pool !== undefined && pool.count > 0 && pool.expiresAt > now);
    if (!tokenReady && key !== undefined) {
      const refused = this.#refusedUntil.get(key);
      if (refused !== undefined && refused.until > now) {
        return refusedDecision('rate', 0, Math.max(0, refused.resetAt - now), refused.until - now);
      }
    }
    let slots: SlotPool | undefined;
    if (cap !== undefined) {
      slots = this.#slots.get(tenantId);
      // A changed cap changes the headroom kept from the next release on.
      if (slots) slots.batch = slotBatch(cap);
      if (slots && slots.inFlight >= cap) return refusedDecision('concurrency', 0, 0, 1000);
      if (!slots || slots.inFlight >= slots.held) return undefined;
    }
    if (!tokenReady) return undefined;
    let remaining = -1;
    let resetMs = 0;
    if (pool) {
      pool.count -= 1;
      pool.remaining = Math.max(0, pool.remaining - 1);
      remaining = pool.remaining;
      resetMs = Math.max(0, pool.resetAt - now);
    }
    if (!slots) return { allowed: true, remaining, resetMs, retryMs: 0, release: noop };
    slots.inFlight += 1;
    return { allowed: true, remaining, resetMs, retryMs: 0, release: this.#releaser(tenantId, slots) };
  }

  /** One script call for what is missing; resolves with a refusal, or undefined to spend again. */
  #refill(
    tenantId: string,
    policy: BucketPolicy | undefined,
    cap: number | undefined,
    key: string | undefined,
  ): Promise<SharedDecision | undefined> {
    // Requests arriving while a call for this tenant runs share its answer: a refusal refuses them
    // too (what Redis said holds for all of them), a grant lets them spend again. Each retrying on
    // its own made a burst of N refused requests N calls in a row, each waking all the others.
    const running = this.#refills.get(tenantId);
    if (running) return running;
    const now = this.#now();
    const pool = key === undefined ? undefined : this.#tokens.get(key);
    const needTokens = policy !== undefined && !(pool && pool.count > 0 && pool.expiresAt > now);
    const slots = cap === undefined ? undefined : this.#slots.get(tenantId);
    const needSlots = cap !== undefined && (!slots || slots.inFlight >= slots.held);
    const base = `${this.#prefix}limits:{${tenantId}}`;
    const take = (this.#client as unknown as { tenantryTake: TakeCommand }).tenantryTake;
    const refill = take
      .call(
        this.#client,
        `${base}:bucket:${policy?.name ?? 'none'}`,
        `${base}:slots`,
        needTokens && policy ? policy.intervalMs : 0,
        policy?.burst ?? 0,
        needTokens && policy ? tokenBatch(policy) : 0,
        cap ?? -1,
        needSlots && cap !== undefined ? slotBatch(cap) : 0,
        this.#process,
        this.#leaseMs,
      )
      .then(([status, remaining, resetMs, retryMs, took, granted]) => {
        if (status === 0) {
          if (key !== undefined && retryMs > 0) {
            const at = this.#now();
            this.#refusedUntil.set(key, { until: at + retryMs, resetAt: at + resetMs });
          }
          return refusedDecision('rate', 0, resetMs, retryMs);
        }
        if (status === -1) return refusedDecision('concurrency', 0, 0, retryMs);
        const at = this.#now();
        if (key !== undefined && took > 0) {
          const current = this.#tokens.get(key);
          const usable = current && current.expiresAt > at ? current.count : 0;
          this.#tokens.set(key, {
            count: usable + took,
            expiresAt: at + TOKEN_POOL_MS,
            remaining: Math.max(0, remaining) + took,
            resetAt: at + resetMs,
          });
        }
        if (cap !== undefined && granted > 0) {
          const pool = this.#slots.get(tenantId) ?? { held: 0, inFlight: 0, batch: slotBatch(cap) };
          pool.held += granted;
          pool.batch = slotBatch(cap);
          this.#slots.set(tenantId, pool);
        }
        return undefined;
      })
      .finally(() => {
        this.#refills.delete(tenantId);
        if (this.#holdAfterRefill.delete(tenantId))
          this.#hold(tenantId, this.#slots.get(tenantId)?.held ?? 0);
      });
    this.#refills.set(tenantId, refill);
    return refill;
  }

  #releaser(tenantId: string, slots: SlotPool): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      slots.inFlight -= 1;
      // Headroom of one batch keeps busy tenants off Redis; batches of one give back at once.
      const keep = slots.batch === 1 ? 0 : slots.batch;
      if (slots.held - slots.inFlight <= keep) return;
      slots.held = slots.inFlight + keep;
      this.#hold(tenantId, slots.held);
      if (slots.held === 0) this.#slots.delete(tenantId);
    };
  }

  #hold(tenantId: string, count: number): void {
    // The count is absolute: written while a call that takes slots runs, it could land after that
    // call and erase its grant, letting the cap be exceeded. Written when that call is over.
    if (this.#refills.has(tenantId)) {
      this.#holdAfterRefill.add(tenantId);
      return;
    }
    const hold = (this.#client as unknown as { tenantryHold: HoldCommand }).tenantryHold;
    // If this fails the lease frees the slots.
    hold
      .call(this.#client, `${this.#prefix}limits:{${tenantId}}:slots`, this.#process, count, this.#leaseMs)
      .catch(noop);
  }

  /**
   * Gives back the slots of tenants with nothing in flight here: headroom kept by idle processes
   * would otherwise add up (processes × batch) to the whole cap, or outlive a lowered cap, and
   * refuse the tenant in every other process while nobody uses them.
   */
  #releaseIdle(): void {
    for (const [tenantId, slots] of this.#slots) {
      if (slots.inFlight > 0 || this.#refills.has(tenantId)) continue;
      this.#slots.delete(tenantId);
      if (slots.held > 0) this.#hold(tenantId, 0);
    }
  }

  /** Renews the leases of every tenant this process holds slots for (and re-asserts them after a Redis restart). */
  #reassert(): void {
    for (const [tenantId, slots] of this.#slots) if (slots.held > 0) this.#hold(tenantId, slots.held);
    const now = this.#now();
    for (const [key, pool] of this.#tokens) if (pool.expiresAt <= now) this.#tokens.delete(key);
    for (const [key, refused] of this.#refusedUntil) if (refused.until <= now) this.#refusedUntil.delete(key);
  }
}

function noop(): void {}

function refusedDecision(
  reason: 'rate' | 'concurrency',
  remaining: number,
  resetMs: number,
  retryMs: number,
): SharedDecision {
  return { allowed: false, reason, remaining, resetMs, retryMs, release: noop };
}
