import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Engine } from '../engine/engine.js';
import { TenantryError } from '../errors.js';
import type { Resolution, TenantCredentials } from '../resolve/tenant-resolver.js';
import type { FailureTry } from '../runtime/failure-limiter.js';
import type { Admission } from '../runtime/tenant-limiter.js';
import type { Tenant } from '../tenants/tenant.js';
import { problemFor, sendProblem } from './problem.js';
import { actionContext } from './request-context.js';

type Done = (error?: Error) => void;

/**
 * The limits step of the request flow, after the tenant is known: its token bucket and its cap
 * on requests in flight. Every response of a rate-limited tenant carries the RateLimit-* fields
 * (draft-ietf-httpapi-ratelimit-headers); a refusal is 429 `rate_limited` with Retry-After.
 * A callback, so a tenant limited in memory pays no promise.
 */
export function admitWithinLimits(
  engine: Engine,
  request: FastifyRequest,
  reply: FastifyReply,
  done: Done,
): void {
  const tenant = request.tenant as Tenant;
  const admission = engine.limiter.admit(
    tenant,
    request.actor?.kind === 'anonymous' ? 'anonymous' : 'authenticated',
  );
  if (admission === undefined) {
    done();
    return;
  }
  if (admission instanceof Promise) {
    admission.then(
      (decided) => finish(engine, tenant, request, reply, decided, done),
      (error: Error) => done(error),
    );
    return;
  }
  finish(engine, tenant, request, reply, admission, done);
}

const RATE_DETAIL = 'this tenant is over its request rate; retry after the time in Retry-After';
const CONCURRENCY_DETAIL = 'this tenant has too many requests in flight; retry shortly';

function finish(
  engine: Engine,
  tenant: Tenant,
  request: FastifyRequest,
  reply: FastifyReply,
  admission: Admission,
  done: Done,
): void {
  const rate = admission.rate;
  if (rate) {
    reply.headers({
      'ratelimit-limit': rate.limit,
      'ratelimit-remaining': rate.remaining,
      'ratelimit-reset': rate.resetSeconds,
      'ratelimit-policy': rate.policy,
    });
  }
  if (!admission.allowed) {
    const reason = admission.reason ?? 'rate';
    engine.metrics.rateLimited(tenant.slug, reason);
    // Answered here, not thrown: a flooding tenant's refusals are the hot path of an overload, and
    // an Error (its stack trace) and the error handler would double their cost.
    sendProblem(request, reply, {
      ...problemFor('rate_limited', reason === 'rate' ? RATE_DETAIL : CONCURRENCY_DETAIL),
      retryAfter: admission.retryAfterSeconds,
    });
    return;
  }
  if (tenant.effective.limits.maxConcurrent !== undefined) {
    // 'close' fires once whether the response finished or the client went away; a client can
    // also have gone while the admission was being decided (a key's first check, Redis), and then
    // 'close' has fired already: the slot is given back now, or it would be held for good.
    if (reply.raw.closed) admission.release();
    else reply.raw.once('close', admission.release);
  }
  done();
}

/**
 * Resolution when nothing is cached: an API key that is not known yet costs a slow hash, so a
 * client address that keeps failing is refused before it is hashed again.
 */
export function resolveGuarded(
  engine: Engine,
  request: FastifyRequest,
  credentials: TenantCredentials,
): Promise<Resolution> {
  if (credentials.apiKey === undefined) return engine.resolver.resolve(credentials, actionContext(request));
  // Requests from one address with the same credentials while their check runs are one check (the
  // verifier hashes the key once for all of them): they share its answer and take one allowance
  // slot, not one each. Each taking its own made a client's burst after a cache invalidation 429.
  let running = guardedChecks.get(engine);
  if (!running) {
    running = new Map();
    guardedChecks.set(engine, running);
  }
  const key = [
    request.ip,
    credentials.host,
    credentials.apiKey,
    credentials.session,
    credentials.otherSession,
  ].join('\n');
  const joined = running.get(key);
  if (joined) return joined;
  const checks = running;
  const check = resolveCounted(engine, request, credentials).finally(() => checks.delete(key));
  checks.set(key, check);
  return check;
}

/** Checks in flight by address and credentials, per engine. */
const guardedChecks = new WeakMap<Engine, Map<string, Promise<Resolution>>>();

async function resolveCounted(
  engine: Engine,
  request: FastifyRequest,
  credentials: TenantCredentials,
): Promise<Resolution> {
  const attempt = await engine.keyFailures.begin(request.ip);
  if (attempt.waitMs > 0) return resolveFromBlockedAddress(engine, request, credentials, attempt.waitMs);
  return resolveCountingFailures(engine, request, credentials, attempt);
}

/** Resolves, and ends `attempt` as failed when the credentials were refused. */
async function resolveCountingFailures(
  engine: Engine,
  request: FastifyRequest,
  credentials: TenantCredentials,
  attempt: FailureTry,
): Promise<Resolution> {
  try {
    const resolution = await engine.resolver.resolve(credentials, actionContext(request));
    await attempt.end(false);
    return resolution;
  } catch (error) {
    await attempt.end(error instanceof TenantryError && error.code === 'invalid_credentials');
    throw error;
  }
}

/**
 * An address over its failure allowance (many clients behind one proxy, or an attacker) still
 * gets a key that verifies answered: many customers must not be locked out by one. What bounds
 * the attacker's hashing instead is the key: a key id that no usable key has is refused without
 * a hash, and each existing key id has a failure allowance of its own.
 */
async function resolveFromBlockedAddress(
  engine: Engine,
  request: FastifyRequest,
  credentials: TenantCredentials,
  waitMs: number,
): Promise<Resolution> {
  const keyId = await engine.apiKeys.knownKeyId(credentials.apiKey!);
  if (keyId === undefined) throw tooManyFailures(engine, waitMs);
  const attempt = await engine.keyIdFailures.begin(keyId);
  if (attempt.waitMs > 0) throw tooManyFailures(engine, Math.max(waitMs, attempt.waitMs));
  return resolveCountingFailures(engine, request, credentials, attempt);
}

function tooManyFailures(engine: Engine, waitMs: number): TenantryError {
  engine.metrics.rateLimited(undefined, 'key_failures');
  return new TenantryError('rate_limited', 'too many failed credential checks from this address', {
    retryAfterSeconds: Math.ceil(waitMs / 1000),
  });
}
