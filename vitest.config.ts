import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    pool: 'forks',
    // Vitest's default (CPUs - 1) runs one file at a time on a 2-core machine, while most files
    // spend their time waiting on PostgreSQL, Redis and child processes: two at a time took the
    // suite from 765 s to 548 s there. Files never share a database, a Redis prefix or a port.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default', './test/helpers/driver-count-reporter.ts'],
  },
});
