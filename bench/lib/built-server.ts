import { mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** Where built server scripts go (ignored by git). */
const OUT_DIR = fileURLToPath(new URL('../../.bench-data/built/', import.meta.url));

/**
 * Compiles a TypeScript server script with what it imports from the project into one JavaScript
 * module (npm packages stay imports), the way a production build emits it. tsx, which runs the
 * scripts otherwise, compiles with `keepNames`: every function created at run time then also
 * calls a helper that defines its `name`, work per request that no production build has. The
 * benchmarks that judge CPU per request run every server, Tenantry and its peers alike, built.
 */
export async function builtServerScript(script: string): Promise<string> {
  mkdirSync(OUT_DIR, { recursive: true });
  const outfile = join(OUT_DIR, basename(script).replace(/\.ts$/, '.mjs'));
  await build({
    entryPoints: [script],
    outfile,
    bundle: true,
    packages: 'external',
    platform: 'node',
    format: 'esm',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'warning',
  });
  return outfile;
}
