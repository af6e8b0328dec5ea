/**
 * Summarises a V8 `.cpuprofile` (as written by `npm run bench -- tenant-info --profile`):
 * self time by function and by file or package, and inclusive time of the functions named on the
 * command line.
 *
 *   node --import tsx bench/profile-summary.ts <file.cpuprofile> [--top=30] [--match=verify]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fmt } from './lib/stats.js';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly hitCount?: number;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { top: { type: 'string', default: '30' }, match: { type: 'string', multiple: true } },
});
const file = positionals[0];
if (!file) throw new Error('usage: profile-summary <file.cpuprofile> [--top=30] [--match=name]');
const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
const top = Number(values.top);

const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const parentOf = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parentOf.set(child, node.id);
const totalSamples = profile.samples.length;
const share = (count: number) => `${fmt((count / totalSamples) * 100, 1)} %`;

function place(url: string): string {
  if (url === '') return '(native/vm)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  const own = /\/(src|bench)\/(.+)$/.exec(url);
  if (own) return `${own[1]}/${own[2]}`;
  return url.startsWith('node:') ? url : url.replace(/^file:\/\//, '');
}

const frameName = (node: ProfileNode) =>
  `${node.callFrame.functionName || '(anonymous)'} ${place(node.callFrame.url)}:${node.callFrame.lineNumber + 1}`;

const selfByFunction = new Map<string, number>();
const selfByPlace = new Map<string, number>();
const hits = new Map<number, number>();
for (const id of profile.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
for (const [id, count] of hits) {
  const node = byId.get(id)!;
  const name = frameName(node);
  selfByFunction.set(name, (selfByFunction.get(name) ?? 0) + count);
  const where = place(node.callFrame.url);
  selfByPlace.set(where, (selfByPlace.get(where) ?? 0) + count);
}

function table(title: string, entries: Map<string, number>): string {
  const rows = [...entries].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `#### ${title}`,
    '',
    '| share | samples | where |',
    '| ---: | ---: | --- |',
    ...rows.map(([name, count]) => `| ${share(count)} | ${count} | \`${name}\` |`),
  ].join('\n');
}

const sections = [
  `Profile ${file}: ${totalSamples} samples over ${fmt((profile.endTime - profile.startTime) / 1e6, 1)} s`,
  table('Self time by file or package', selfByPlace),
  table('Self time by function', selfByFunction),
];

// Inclusive time of functions whose name contains a --match string: samples with such a frame
// anywhere on their stack, each sample counted once.
for (const pattern of values.match ?? []) {
  let inclusive = 0;
  for (const [id, count] of hits) {
    let current: number | undefined = id;
    while (current !== undefined) {
      if (byId.get(current)!.callFrame.functionName.includes(pattern)) {
        inclusive += count;
        break;
      }
      current = parentOf.get(current);
    }
  }
  sections.push(`Inclusive time of frames matching "${pattern}": ${share(inclusive)} (${inclusive} samples)`);
}
process.stdout.write(`${sections.join('\n\n')}\n`);
