import { randomBytes } from 'node:crypto';
import { loadConfig } from '../src/config/load-config.js';
import { SYSTEM_CONTEXT } from '../src/runtime/actor.js';
import { engineOf, Tenantry } from '../src/tenantry.js';
import { cpuSnapshot, cpuUsage, waitForQuiet } from './lib/cpu-usage.js';
import { createScratchDatabase } from './lib/scratch-database.js';
import { fmt, mean, median, percentile } from './lib/stats.js';

export interface ApiKeyVerifyOptions {
  /** Wait before each series until other processes use at most this many cores. */
  readonly maxOtherCores: number;
  /** Measured calls on the cached path. */
  readonly cachedCalls: number;
  /** Measured calls on each slow (PBKDF2) path. */
  readonly slowCalls: number;
  readonly log: (line: string) => void;
}

interface Series {
  readonly kind: 'cached' | 'resolve' | 'uncached' | 'failure';
  readonly label: string;
  readonly samplesMs: readonly number[];
  /** Cores' worth of CPU other processes used while the series ran. */
  readonly otherCores: number | undefined;
}

export interface ApiKeyVerifyReport {
  readonly markdown: string;
  readonly ratio: number;
}

/** Times `call` sequentially `count` times; `before` runs untimed before each call. */
async function measure(
  count: number,
  call: () => Promise<unknown>,
  before: () => void = () => undefined,
): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < count; i += 1) {
    before();
    const start = process.hrtime.bigint();
    await call();
    samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  return samples;
}

/** Waits for a quiet machine, then measures, noting how much CPU everything else took meanwhile. */
async function measureSeries(
  kind: Series['kind'],
  label: string,
  options: ApiKeyVerifyOptions,
  run: () => Promise<number[]>,
): Promise<Series> {
  await waitForQuiet(options.maxOtherCores, options.log);
  const before = cpuSnapshot(process.pid);
  const started = process.hrtime.bigint();
  const samplesMs = await run();
  const usage = cpuUsage(before, cpuSnapshot(process.pid));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  // The measured code (PBKDF2 on libuv threads included) all runs in this process.
  const otherCores = usage ? Math.max(0, usage.busyMs - usage.processMs) / 1000 / seconds : undefined;
  return { kind, label, samplesMs, otherCores };
}

function withSecret(key: string, secret: string): string {
  return key.slice(0, key.lastIndexOf('_') + 1) + secret;
}

/**
 * Cost of one `ApiKeyVerifier.verify` on PostgreSQL: the cached path (keyed digest in memory)
 * against the uncached one (key row lookup + PBKDF2), and the failures, whose timing should not
 * tell a wrong secret from an unknown key id.
 */
export async function benchApiKeyVerify(options: ApiKeyVerifyOptions): Promise<ApiKeyVerifyReport> {
  const { log } = options;
  const database = await createScratchDatabase('verify');
  let tenantry: Tenantry | undefined;
  try {
    const config = loadConfig({ ignoreConfigFile: true, env: { DATABASE_URL: database.url } });
    const engine = await Tenantry.open({ config });
    tenantry = engine;
    const created = await engine.tenants.create(
      { name: 'Verify Bench', slug: 'verify-bench' },
      { context: SYSTEM_CONTEXT },
    );
    const key = created.apiKey.key;
    const verifier = engineOf(engine).apiKeys;
    const check = async (presented: string, expectValid: boolean) => {
      const verified = await verifier.verify(presented);
      if (expectValid !== (verified?.tenantId === created.tenant.id)) {
        throw new Error(`verify(${presented.slice(0, 24)}...) gave ${JSON.stringify(verified)}`);
      }
    };
    const wrongSecret = withSecret(key, randomBytes(32).toString('base64url'));
    const unknownId = `tny_${randomBytes(8).toString('hex')}_${randomBytes(32).toString('base64url')}`;
    const malformed = 'tny_not-a-key';
    const clear = () => verifier.clear();

    log(`verifier: ${config.apiKeys.iterations} PBKDF2-SHA256 iterations; warming up`);
    await measure(3, () => check(key, true), clear);
    await measure(3, () => check(wrongSecret, false));
    await measure(2_000, () => check(key, true));

    const { cachedCalls, slowCalls } = options;
    log(`fast paths: ${cachedCalls} calls each`);
    const series: Series[] = [];
    series.push(
      await measureSeries('cached', 'valid key, cached, `verify` (async)', options, () =>
        measure(cachedCalls, () => check(key, true)),
      ),
    );
    // The synchronous steady-state path the tenant hook takes first (nothing awaited).
    const measureSync = async (count: number, call: () => void): Promise<number[]> => {
      const samples: number[] = [];
      for (let i = 0; i < count; i += 1) {
        const start = process.hrtime.bigint();
        call();
        samples.push(Number(process.hrtime.bigint() - start) / 1e6);
      }
      return samples;
    };
    const verifyCached = () => {
      if (verifier.verifyCached(key)?.tenantId !== created.tenant.id) throw new Error('verifyCached missed');
    };
    await measureSync(2_000, verifyCached);
    series.push(
      await measureSeries('cached', 'valid key, cached, synchronous `verifyCached`', options, () =>
        measureSync(cachedCalls, verifyCached),
      ),
    );
    const resolveCached = () => {
      if (!engineOf(engine).resolver.resolveCached({ host: undefined, apiKey: key }))
        throw new Error('resolveCached missed');
    };
    // The tenant cache is filled by the asynchronous path; the synchronous one only reads it.
    await engineOf(engine).resolver.resolve(
      { host: undefined, apiKey: key },
      { actor: { kind: 'anonymous', id: 'bench' } },
    );
    await measureSync(2_000, resolveCached);
    series.push(
      await measureSeries(
        'resolve',
        'whole resolution, synchronous `resolveCached({ apiKey })`',
        options,
        () => measureSync(cachedCalls, resolveCached),
      ),
    );
    const resolveContext = { actor: { kind: 'anonymous', id: 'bench' } } as const;
    const resolve = () => engineOf(engine).resolver.resolve({ host: undefined, apiKey: key }, resolveContext);
    await measure(2_000, resolve);
    series.push(
      await measureSeries(
        'resolve',
        'whole resolution, `resolver.resolve({ apiKey })`, key cached',
        options,
        () => measure(cachedCalls, resolve),
      ),
    );
    // The slow paths are measured interleaved, one call of each in turn, so that a change in the
    // machine's speed (a shared VM) touches all of them alike and their timings stay comparable.
    log(`slow paths: ${slowCalls} calls each, interleaved`);
    const slowPaths: {
      kind: Series['kind'];
      label: string;
      call: () => Promise<void>;
      before?: () => void;
    }[] = [
      {
        kind: 'uncached',
        label: 'valid key, uncached (`clear()` before each call)',
        call: () => check(key, true),
        before: clear,
      },
      // Measured right after the valid key was cached again: a wrong secret for a cached key id
      // must not be answered fast.
      { kind: 'failure', label: 'wrong secret, known key id', call: () => check(wrongSecret, false) },
      { kind: 'failure', label: 'unknown key id', call: () => check(unknownId, false) },
      { kind: 'failure', label: 'malformed key', call: () => check(malformed, false) },
    ];
    const slowSamples = slowPaths.map((): number[] => []);
    const interleaved = await measureSeries('uncached', '', options, async () => {
      for (let i = 0; i < slowCalls; i += 1) {
        for (const [index, path] of slowPaths.entries()) {
          slowSamples[index]!.push(...(await measure(1, path.call, path.before)));
        }
      }
      return [];
    });
    for (const [index, path] of slowPaths.entries()) {
      series.push({
        kind: path.kind,
        label: path.label,
        samplesMs: slowSamples[index]!,
        otherCores: interleaved.otherCores,
      });
    }
    return summarize(series, options, config.apiKeys.iterations);
  } finally {
    await tenantry?.close();
    await database.drop();
  }
}

function formatMs(ms: number): string {
  if (ms < 0.1) return `${fmt(ms * 1000, 1)} µs`;
  return `${fmt(ms, 2)} ms`;
}

function summarize(series: readonly Series[], options: ApiKeyVerifyOptions, iterations: number) {
  const find = (kind: Series['kind']) => series.filter((entry) => entry.kind === kind);
  // The reference fast path is `verify` itself, the first series.
  const cached = find('cached')[0]!.samplesMs;
  const uncached = find('uncached')[0]!.samplesMs;
  const failures = find('failure');
  const ratioMedian = median(uncached) / median(cached);
  const ratioMean = mean(uncached) / mean(cached);
  const reference = median(uncached);
  const slowMedians = [reference, ...failures.map((entry) => median(entry.samplesMs))];
  const spread = (Math.max(...slowMedians) - Math.min(...slowMedians)) / reference;
  const lines = [
    '### ApiKeyVerifier.verify: cached vs uncached',
    '',
    `Sequential calls of \`tenantry.apiKeys.verify(key)\` in one process on PostgreSQL, ` +
      `${iterations} PBKDF2-SHA256 iterations; ${options.cachedCalls} calls per fast path, ` +
      `${options.slowCalls} calls per slow path (the slow paths interleaved call by call), after a ` +
      `warm-up and after waiting for the machine to be quiet (other processes at most ` +
      `${options.maxOtherCores} of a core).`,
    '',
    '| path | calls | mean | median | p99 | median vs valid uncached | other cores meanwhile |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...series.map((entry) => {
      const samples = entry.samplesMs;
      const slow = entry.kind === 'uncached' || entry.kind === 'failure';
      const delta = slow ? `${fmt(((median(samples) - reference) / reference) * 100, 1)} %` : '—';
      return (
        `| ${entry.label} | ${fmt(samples.length)} | ${formatMs(mean(samples))} | ` +
        `${formatMs(median(samples))} | ${formatMs(percentile(samples, 99))} | ${delta} | ` +
        `${entry.otherCores === undefined ? 'n/a' : fmt(entry.otherCores, 2)} |`
      );
    }),
    '',
    `**Ratio uncached/cached: ${fmt(ratioMedian)}× by median, ${fmt(ratioMean)}× by mean.**`,
    `The medians of the valid uncached check and of the ${failures.length} failures lie within ` +
      `${fmt(spread * 100, 1)} % of the valid uncached median.`,
  ];
  return { markdown: lines.join('\n'), ratio: ratioMedian };
}
