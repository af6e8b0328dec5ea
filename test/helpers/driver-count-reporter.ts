import type { Reporter, TestCase, TestModule, Vitest } from 'vitest/node';

/**
 * Prints, once per run, how many suites (and their tests) ran on each database driver, so a run
 * where the PostgreSQL halves were skipped says so instead of merely being shorter. A suite is
 * counted for a driver its name (or an enclosing one) names: `describe.each(DRIVERS)('… on %s')`
 * and the PostgreSQL-only suites do.
 */
const DRIVERS = [
  ['pglite', /\bpglite\b/i],
  ['postgres', /\bpostgres(?:ql)?\b/i],
] as const;

type Driver = (typeof DRIVERS)[number][0];

/** The names of the suites around a test, outermost first. */
function suiteNames(test: TestCase): string[] {
  const names: string[] = [];
  for (let parent = test.parent; parent.type === 'suite'; parent = parent.parent) names.unshift(parent.name);
  return names;
}

export default class DriverCountReporter implements Reporter {
  #vitest: Vitest | undefined;

  onInit(vitest: Vitest): void {
    this.#vitest = vitest;
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const suites: Record<Driver, Set<string>> = { pglite: new Set(), postgres: new Set() };
    const tests: Record<Driver, number> = { pglite: 0, postgres: 0 };
    for (const module of modules) {
      for (const test of module.children.allTests()) {
        const { state } = test.result();
        if (state !== 'passed' && state !== 'failed') continue;
        const names = suiteNames(test);
        for (const [driver, pattern] of DRIVERS) {
          if (!names.some((name) => pattern.test(name))) continue;
          suites[driver].add(`${module.moduleId} ${names[0]}`);
          tests[driver] += 1;
        }
      }
    }
    const counts = DRIVERS.map(
      ([driver]) => `${driver} ${suites[driver].size} suites (${tests[driver]} tests)`,
    ).join(', ');
    (this.#vitest?.logger ?? console).log(`Ran per database driver: ${counts}`);
  }
}
