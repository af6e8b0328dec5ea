/**
 * With `--expose-gc`, SIGUSR2 runs a full garbage collection: the callgrind benchmark starts
 * every round from the same heap, so whether a round happens to include a major collection does
 * not swing its instruction count.
 */
const collect = (globalThis as { gc?: () => void }).gc;
if (collect) process.on('SIGUSR2', () => collect());
