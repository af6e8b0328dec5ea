/**
 * The allocation benchmark's probe inside a bench server (started with an IPC channel,
 * `--expose-gc` and a young generation large enough that no collection runs during a sample).
 * `start` collects the heap and notes its size; `stop` reports how much the heap grew since, and
 * how many collections ran in between (a sample with any is void: the growth would undercount).
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

interface ProbeMessage {
  readonly heapProbe: 'start' | 'stop';
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
  process.on('message', (message: ProbeMessage) => {
    if (message.heapProbe === 'start') {
      collect();
      collect();
      usedAtStart = v8.getHeapStatistics().used_heap_size;
      startedAt = performance.now();
      send({ heapProbe: 'started' });
    } else if (message.heapProbe === 'stop') {
      const grown = v8.getHeapStatistics().used_heap_size - usedAtStart;
      const stoppedAt = performance.now();
      // GC entries reach the observer asynchronously.
      setTimeout(() => {
        const during = collections.filter((time) => time > startedAt && time < stoppedAt).length;
        send({ heapProbe: 'stopped', grown, collections: during });
      }, 50);
    }
  });
  // The IPC channel must not keep a server alive after SIGTERM closed everything else.
  process.channel?.unref();
}
