import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { IN_CI } from './ci.js';
import { RUN_ID } from './postgres.js';

export const REDIS_URL = process.env.TENANTRY_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
/** A port nothing listens on: Redis "down" from the start. */
export const CLOSED_REDIS_URL = 'redis://127.0.0.1:1';

/** Whether the test Redis answers; in CI (see IN_CI) a missing Redis fails the suites instead. */
export async function redisAvailable(): Promise<boolean> {
  const client = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch (error) {
    if (IN_CI) throw new Error(`Redis is required under CI=${process.env.CI} (${REDIS_URL}): ${error}`);
    return false;
  } finally {
    client.disconnect();
  }
}

/** A key prefix of its own, so test files sharing one Redis never see each other's keys. */
export function redisPrefix(): string {
  return `tenantry-test:${RUN_ID}:${randomUUID().slice(0, 8)}:`;
}
