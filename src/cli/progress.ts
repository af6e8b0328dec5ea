import { SingleBar } from 'cli-progress';
import type { OperationProgress } from '../operations/operation.js';
import type { Output } from './output.js';

export interface ProgressReporter {
  update(progress: OperationProgress): void;
  stop(): void;
}

/**
 * An operation's progress on stderr: a bar on a terminal, otherwise a plain line every few
 * seconds (logs of a scheduled job stay readable). Nothing with `--json`.
 */
export function progressReporter(
  stderr: NodeJS.WritableStream,
  out: Output,
  label: string,
  mode: 'bar' | 'lines' | 'none',
): ProgressReporter {
  const started = Date.now();
  let bar: SingleBar | undefined;
  let lastLine = 0;
  return {
    update(progress) {
      if (mode === 'none') return;
      const total = progress.total;
      if (mode === 'bar' && total !== undefined) {
        if (!bar) {
          bar = new SingleBar({
            stream: stderr as NodeJS.WriteStream,
            format: `${label} |{bar}| {value}/{total} ${progress.unit} | ETA {eta_formatted}`,
            hideCursor: true,
          });
          bar.start(total, 0);
        }
        bar.setTotal(Math.max(total, progress.done));
        bar.update(progress.done);
        return;
      }
      const now = Date.now();
      if (now - lastLine < 2_000) return;
      lastLine = now;
      const seconds = Math.max(0.001, (now - started) / 1000);
      out.error(
        `${label}: ${progress.done}${total === undefined ? '' : `/${total}`} ${progress.unit}, ${(progress.done / seconds).toFixed(0)}/s`,
      );
    },
    stop() {
      bar?.stop();
    },
  };
}
