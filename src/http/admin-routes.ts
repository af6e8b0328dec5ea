import type { FastifyInstance } from 'fastify';
import type { Engine } from '../engine/engine.js';
import { catalogue } from '../operations/catalogue.js';
import { registerOperationRoutes } from './operation-routes.js';
import { actionContext } from './request-context.js';

/** Operator routes under /admin, from the catalogue. Registered inside `adminScope`. */
export function adminRoutes(engine: Engine) {
  return (scope: FastifyInstance): void =>
    registerOperationRoutes(scope, engine, catalogue, 'admin', (request) => ({
      kind: 'operator',
      context: actionContext(request),
    }));
}
