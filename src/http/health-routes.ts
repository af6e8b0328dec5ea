import type { FastifyInstance } from 'fastify';
import { databaseUnavailable } from '../db/connection-failure.js';
import type { Engine } from '../engine/engine.js';
import { isTenantryError } from '../errors.js';
import { Security } from './schemas.js';

const READY_TIMEOUT_MS = 2_000;

export function healthRoutes(engine: Engine) {
  return (app: FastifyInstance): void => {
    app.get(
      '/healthz',
      { schema: { tags: ['operations'], security: Security.none, summary: 'The process is alive' } },
      async () => ({
        status: 'ok',
      }),
    );
    app.get(
      '/readyz',
      {
        schema: {
          tags: ['operations'],
          security: Security.none,
          summary: 'The process can serve: the database answers',
        },
      },
      async () => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error('database ping timed out')), READY_TIMEOUT_MS);
        });
        try {
          await Promise.race([engine.db.ping(), timeout]);
        } catch (error) {
          throw isTenantryError(error) ? error : databaseUnavailable(error);
        } finally {
          clearTimeout(timer);
        }
        return { status: 'ready' };
      },
    );
  };
}
