/**
 * The allocation benchmark's probe inside a bench server (started with an IPC channel,
 * `--expose-gc` and a young generation large enough that no collection runs during a sample).
 * `start` collects the heap and notes its size; `stop` reports how much the heap grew since, and
 * how many collections ran in between (a sample with any is void: the growth would undercount).
 * With `sources`, V8's sampling heap profiler runs during the sample, and `stop` answers the bytes
 * sampled per allocating function (`name file:line`, the innermost frame).
 */
import { Session } from 'node:inspector/promises';
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

interface ProbeMessage {
  readonly heapProbe: 'start' | 'stop';
  readonly sources?: boolean;
}

interface SamplingNode {
  readonly callFrame: { functionName: string; url: string; lineNumber: number };
  readonly selfSize: number;
  readonly children: readonly SamplingNode[];
}

/** Builtins (no file) are named with the nearest caller that has one: `exec ← parseApiKey …`. */
function bySource(root: SamplingNode): Record<string, number> {
  const sizes: Record<string, number> = {};
  const visit = (node: SamplingNode, caller: string) => {
    const { functionName, url, lineNumber } = node.callFrame;
    const file = url.replace(/^.*\/node_modules\//, '').replace(/^.*\/main\//, '');
    const name = functionName || '(anonymous)';
    const here = file ? `${name} ${file}:${lineNumber + 1}` : `${name} ← ${caller}`;
    if (node.selfSize > 0) sizes[here] = (sizes[here] ?? 0) + node.selfSize;
    for (const child of node.children) visit(child, file ? here : caller);
  };
  visit(root, '(root)');
  return sizes;
}

const collect = (globalThis as { gc?: () => void }).gc;
const send = process.send?.bind(process);

if (collect && send) {
  const collections: number[] = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) collections.push(entry.startTime);
  }).observe({ entryTypes: ['gc'] });
  let startedAt = 0;
  let usedAtStart = 0;
  let profiler: Session | undefined;
  process.on('message', async (message: ProbeMessage) => {
    if (message.heapProbe === 'start') {
      if (message.sources) {
        profiler = new Session();
        profiler.connect();
        await profiler.post('HeapProfiler.startSampling', {
          samplingInterval: 256,
          includeObjectsCollectedByMajorGC: true,
          includeObjectsCollectedByMinorGC: true,
        });
      }
      collect();
      collect();
      usedAtStart = v8.getHeapStatistics().used_heap_size;
      startedAt = performance.now();
      send({ heapProbe: 'started' });
    } else if (message.heapProbe === 'stop') {
      const grown = v8.getHeapStatistics().used_heap_size - usedAtStart;
      const stoppedAt = performance.now();
      let sources: Record<string, number> | undefined;
      if (profiler) {
        const { profile } = await profiler.post('HeapProfiler.stopSampling');
        sources = bySource(profile.head as SamplingNode);
        profiler.disconnect();
        profiler = undefined;
      }
      // GC entries reach the observer asynchronously.
      setTimeout(() => {
        const during = collections.filter((time) => time > startedAt && time < stoppedAt).length;
        send({ heapProbe: 'stopped', grown, collections: during, sources });
      }, 50);
    }
  });
  // The IPC channel must not keep a server alive after SIGTERM closed everything else.
  process.channel?.unref();
}
