/**
 * Self cost by function of one callgrind dump, with V8's JIT code named: callgrind sees compiled
 * JavaScript only as addresses, and a Node started with `--perf-basic-prof` writes
 * /tmp/perf-<pid>.map (address, size, name of each code object as it is compiled). Code space is
 * reused after garbage collection, so an address takes the newest name written for it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

interface CodeObject {
  readonly start: number;
  readonly size: number;
  readonly name: string;
}

function readPerfMap(pid: number): CodeObject[] {
  const file = `/tmp/perf-${pid}.map`;
  if (!existsSync(file)) return [];
  const objects: CodeObject[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [start, size, ...name] = line.split(' ');
    if (!start || !size || name.length === 0) continue;
    objects.push({
      start: Number.parseInt(start, 16),
      size: Number.parseInt(size, 16),
      name: name.join(' '),
    });
  }
  return objects;
}

function namer(objects: readonly CodeObject[]): (address: number) => string {
  const exact = new Map<number, string>();
  for (const object of objects) exact.set(object.start, object.name);
  return (address) => {
    const name = exact.get(address);
    if (name !== undefined) return name;
    for (let i = objects.length - 1; i >= 0; i -= 1) {
      const object = objects[i]!;
      if (object.start <= address && address < object.start + object.size) return object.name;
    }
    return `JIT code at 0x${address.toString(16)}`;
  };
}

// Frames every cost passes through: their "self" lines in callgrind_annotate are not work.
const FRAMES =
  /\(below main\)|__libc_start_main|^main$|node::Start|node::NodeMainInstance|SpinEventLoop|0x000000000001ab70/;

/** The `top` functions by instructions per request (self cost) in `dump`. */
export function topFunctions(dump: string, pid: number, requests: number, top: number): [string, number][] {
  const text = execFileSync('callgrind_annotate', ['--threshold=100', dump], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  const name = namer(readPerfMap(pid));
  const costs = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$/.exec(line);
    if (!match || match[2]!.includes('PROGRAM TOTALS')) continue;
    const cost = Number(match[1]!.replaceAll(',', ''));
    const jit = /^\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$/.exec(match[2]!);
    const label = jit
      ? `JS ${name(Number.parseInt(jit[1]!, 16))}`
      : match[2]!.replace(/\s*\[[^\]]*\]$/, '').replace('???:', '');
    if (!jit && FRAMES.test(label)) continue;
    costs.set(label, (costs.get(label) ?? 0) + cost);
  }
  return [...costs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([label, cost]) => [label, cost / requests]);
}
