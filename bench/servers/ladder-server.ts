/**
 * Diagnosis only (`npm run bench -- tenant-info-breakdown`): a model of Tenantry's
 * `GET /tenant-info` hot path built up in steps, to see which part costs the throughput.
 *
 *   BENCH_STEP=hooks    bare + what src/http/app.ts adds to every request: request id from
 *                       randomUUID, an async onRequest hook setting three headers, and the
 *                       route's response schema (fast-json-stringify).
 *   BENCH_STEP=resolve  hooks + the tenant scope's async onRequest hook calling the real
 *                       engine's `resolver.resolve` (API key check through the cache) on
 *                       DATABASE_URL, the handler answering `publicTenantView`.
 *   BENCH_STEP=fast     a model of the suggested fix, same work as `resolve` but: callback-style
 *                       (not async) hooks, and a synchronous cache in front of the resolver keyed
 *                       by key id holding a one-shot `crypto.hash` fingerprint of the verified
 *                       secret instead of a per-request `createHmac`. It ignores invalidation,
 *                       so it is an upper bound for what the fix can give, not an implementation.
 *   BENCH_STEP=features fast + what the issues require of every tenant request beyond resolving
 *                       it: a token bucket and its four RateLimit-* fields, and the request
 *                       recorded in the metrics (an onResponse hook); the body serialized once
 *                       per tenant, as the real route does. The required work on a minimal frame.
 *
 * The steps copy the shape of src/http (they do not import the app), so they drift if it changes.
 */
import { hash, randomBytes, randomUUID } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { Registry } from 'prom-client';
import { loadConfig } from '../../src/config/load-config.js';
import { actionContext } from '../../src/http/request-context.js';
import type { Resolution } from '../../src/resolve/tenant-resolver.js';
import { RequestMetrics } from '../../src/runtime/request-metrics.js';
import { bucketPolicy, takeToken } from '../../src/runtime/token-bucket.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { hostFromHeader } from '../../src/tenants/host.js';
import { PublicTenantViewSchema, publicTenantView } from '../../src/tenants/tenant-view.js';

const step = process.env.BENCH_STEP;
if (step !== 'hooks' && step !== 'resolve' && step !== 'fast' && step !== 'features') {
  throw new Error('BENCH_STEP must be hooks, resolve, fast or features');
}
const body: unknown = JSON.parse(process.env.BENCH_BODY ?? '{}');

const app = Fastify({
  logger: false,
  genReqId: (raw) => {
    const given = raw.headers['x-request-id'];
    return typeof given === 'string' && /^[A-Za-z0-9._-]{8,128}$/.test(given) ? given : randomUUID();
  },
});
app.decorateRequest('tenant', null);
app.decorateRequest('tenantResolution', null);
app.decorateRequest('actor', null);
if (step === 'fast' || step === 'features') {
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cache-control', 'no-store');
    done();
  });
} else {
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('cache-control', 'no-store');
  });
}
const schema = { response: { 200: PublicTenantViewSchema } };

let tenantry: Tenantry | undefined;
if (step === 'hooks') {
  app.get('/tenant-info', { schema }, async () => body);
} else if (step === 'fast' || step === 'features') {
  const engine = await Tenantry.open({ config: loadConfig({ ignoreConfigFile: true }), migrate: false });
  tenantry = engine;
  const features = step === 'features';
  const metrics = new RequestMetrics({
    registry: new Registry(),
    counterName: 'requests_total',
    counterHelp: 'requests',
    histogramName: 'request_seconds',
    histogramHelp: 'latency',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  const policy = bucketPolicy({ requestsPerSecond: 1_000_000, burst: 1_000_000 })!;
  const buckets = new Map<string, number>();
  const limit = (tenantId: string, reply: FastifyReply) => {
    const decision = takeToken(buckets.get(tenantId), Date.now(), policy);
    buckets.set(tenantId, decision.tat);
    reply.header('ratelimit-limit', policy.burst);
    reply.header('ratelimit-remaining', decision.remaining);
    reply.header('ratelimit-reset', Math.ceil(decision.resetMs / 1000));
    reply.header('ratelimit-policy', policy.name);
  };
  const pepper = randomBytes(32).toString('base64url');
  const fingerprint = (apiKey: string) => hash('sha256', pepper + apiKey);
  const verified = new Map<string, { readonly fingerprint: string; readonly resolution: Resolution }>();
  const apply = (request: FastifyRequest, resolution: Resolution) => {
    request.tenant = resolution.tenant;
    request.tenantResolution = resolution;
    request.actor = resolution.keyId
      ? { kind: 'api-key', id: resolution.keyId }
      : { kind: 'anonymous', id: 'host' };
    request.log = request.log.child({ tenantId: resolution.tenant.id, tenantSlug: resolution.tenant.slug });
  };
  await app.register(async (scope) => {
    scope.addHook('onRequest', (request, reply, done) => {
      const header = request.headers['x-api-key'];
      const apiKey = Array.isArray(header) ? header.join(',') : header;
      const host = hostFromHeader(request.host);
      if (apiKey !== undefined && host === undefined) {
        const hit = verified.get(apiKey.slice(0, 21));
        if (hit && hit.fingerprint === fingerprint(apiKey)) {
          apply(request, hit.resolution);
          if (features) limit(request.tenant!.id, reply);
          done();
          return;
        }
      }
      engineOf(engine)
        .resolver.resolve({ host, apiKey }, actionContext(request))
        .then((resolution) => {
          if (apiKey !== undefined && host === undefined) {
            verified.set(apiKey.slice(0, 21), { fingerprint: fingerprint(apiKey), resolution });
          }
          apply(request, resolution);
          if (features) limit(resolution.tenant.id, reply);
          done();
        }, done);
    });
    if (features) {
      const serialized = new Map<string, string>();
      scope.addHook('onResponse', (request, reply, done) => {
        metrics.observe(
          request.tenant?.slug ?? 'none',
          request.routeOptions.url ?? 'unmatched',
          request.method,
          reply.statusCode,
          reply.elapsedTime / 1000,
        );
        done();
      });
      scope.get('/tenant-info', { schema }, (request, reply) => {
        const tenant = request.tenant!;
        let json = serialized.get(tenant.id);
        if (json === undefined) {
          json = JSON.stringify(publicTenantView(tenant));
          serialized.set(tenant.id, json);
        }
        return reply.type('application/json; charset=utf-8').send(json);
      });
    } else {
      scope.get('/tenant-info', { schema }, async (request) => publicTenantView(request.tenant!));
    }
  });
} else {
  const engine = await Tenantry.open({ config: loadConfig({ ignoreConfigFile: true }), migrate: false });
  tenantry = engine;
  await app.register(async (scope) => {
    scope.addHook('onRequest', async (request) => {
      const host = hostFromHeader(request.host);
      const header = request.headers['x-api-key'];
      const apiKey = Array.isArray(header) ? header.join(',') : header;
      const resolution = await engineOf(engine).resolver.resolve({ host, apiKey }, actionContext(request));
      request.tenant = resolution.tenant;
      request.tenantResolution = resolution;
      request.actor = resolution.keyId
        ? { kind: 'api-key', id: resolution.keyId }
        : { kind: 'anonymous', id: 'host' };
      request.log = request.log.child({ tenantId: resolution.tenant.id, tenantSlug: resolution.tenant.slug });
    });
    scope.get('/tenant-info', { schema }, async (request) => publicTenantView(request.tenant!));
  });
}

const url = await app.listen({ port: 0, host: '127.0.0.1' });
process.stdout.write(`READY ${url}\n`);

process.once('SIGTERM', () => {
  app
    .close()
    .then(() => tenantry?.close())
    .then(
      () => process.exit(0),
      () => process.exit(1),
    );
});
