import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The shape the code keeps (docs/architecture.md): small files and functions, front ends above
 * the engine, and folders of src/ that import each other in one direction only.
 */

const SRC = fileURLToPath(new URL('../src', import.meta.url));
const MAX_FILE_LINES = 500;
const MAX_FUNCTION_LINES = 100;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sourceFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

/** `engine` for src/engine/engine.ts; files directly in src/ (the entry points) are not a folder. */
function folderOf(file: string): string | undefined {
  const parts = relative(SRC, file).split('/');
  return parts.length > 1 ? parts[0] : undefined;
}

interface Parsed {
  readonly file: string;
  readonly lines: number;
  readonly imports: readonly string[];
  readonly longFunctions: readonly string[];
}

function parse(file: string): Parsed {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const imports: string[] = [];
  const longFunctions: string[] = [];
  const line = (position: number) => source.getLineAndCharacterOfPosition(position).line + 1;
  const visit = (node: ts.Node): void => {
    if (
      ts.isFunctionDeclaration(node) ||
      ts.isMethodDeclaration(node) ||
      ts.isArrowFunction(node) ||
      ts.isFunctionExpression(node) ||
      ts.isConstructorDeclaration(node) ||
      ts.isGetAccessorDeclaration(node)
    ) {
      const length = line(node.getEnd()) - line(node.getStart()) + 1;
      if (length > MAX_FUNCTION_LINES)
        longFunctions.push(`${relative(SRC, file)}:${line(node.getStart())} (${length} lines)`);
    }
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier) &&
      node.moduleSpecifier.text.startsWith('.')
    ) {
      imports.push(resolve(dirname(file), node.moduleSpecifier.text).replace(/\.js$/, '.ts'));
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return { file, lines: text.split('\n').length, imports, longFunctions };
}

const parsed = sourceFiles(SRC).map(parse);

function folderGraph(): Map<string, Set<string>> {
  const graph = new Map<string, Set<string>>();
  for (const { file, imports } of parsed) {
    const from = folderOf(file);
    if (from === undefined) continue;
    for (const target of imports) {
      const to = folderOf(target);
      if (to === undefined || to === from) continue;
      if (!graph.has(from)) graph.set(from, new Set());
      graph.get(from)!.add(to);
    }
  }
  return graph;
}

/** A cycle through `start`, as the folders in order, or undefined. */
function cycleThrough(graph: Map<string, Set<string>>, start: string): string[] | undefined {
  const stack: { folder: string; path: string[] }[] = [{ folder: start, path: [start] }];
  const seen = new Set<string>();
  while (stack.length > 0) {
    const { folder, path } = stack.pop()!;
    for (const next of graph.get(folder) ?? []) {
      if (next === start) return [...path, start];
      if (!seen.has(next)) {
        seen.add(next);
        stack.push({ folder: next, path: [...path, next] });
      }
    }
  }
  return undefined;
}

describe('architecture', () => {
  it(`keeps every source file under ${MAX_FILE_LINES} lines`, () => {
    const long = parsed
      .filter((entry) => entry.lines > MAX_FILE_LINES)
      .map((entry) => relative(SRC, entry.file));
    expect(long).toEqual([]);
  });

  it(`keeps every function under ${MAX_FUNCTION_LINES} lines`, () => {
    expect(parsed.flatMap((entry) => entry.longFunctions)).toEqual([]);
  });

  it('has no import cycle between the folders of src/', () => {
    const graph = folderGraph();
    const cycles = [...graph.keys()].map((folder) => cycleThrough(graph, folder)).filter(Boolean);
    expect(cycles).toEqual([]);
  });

  it('keeps the engine below its front ends: only http/, cli/ and the entry points import them', () => {
    const frontEnds = new Set(['http', 'cli', 'control']);
    const offending = parsed.flatMap(({ file, imports }) => {
      const from = folderOf(file);
      if (from === undefined || frontEnds.has(from)) return [];
      return imports
        .filter((target) => frontEnds.has(folderOf(target) ?? ''))
        .map((target) => `${relative(SRC, file)} -> ${relative(SRC, target)}`);
    });
    expect(offending).toEqual([]);
  });

  it('keeps the CLI off the HTTP layer', () => {
    const offending = parsed
      .filter(({ file }) => folderOf(file) === 'cli')
      .flatMap(({ file, imports }) =>
        imports
          .filter((target) => folderOf(target) === 'http')
          .map((target) => `${relative(SRC, file)} -> ${relative(SRC, target)}`),
      );
    expect(offending).toEqual([]);
  });
});
