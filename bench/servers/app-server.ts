/**
 * Tenantry for the identity and limits benchmarks (TENANTRY_CONFIG, DATABASE_URL, REDIS_URL): the
 * normal server, plus `/open/projects/:id`, the same repository read in a tenant scope that admits
 * a caller known only by its host (the identity benchmark's "no authentication" baseline).
 * Prints `READY <url>`; SIGTERM closes it.
 */
import './heap-probe.js';
import { AdminTokenGuard } from '../../src/auth/admin-token.js';
import { loadConfig } from '../../src/config/load-config.js';
import { buildApp } from '../../src/http/app.js';
import { tenantScope } from '../../src/http/tenant-plugin.js';
import { engineOf, Tenantry } from '../../src/tenantry.js';
import { serveUntilTerm } from '../lib/serve-until-term.js';

const config = loadConfig({ overrides: { port: 0 } });
const tenantry = await Tenantry.open({ config });
const engine = engineOf(tenantry);
const { guard } = await AdminTokenGuard.setUp(engine.db.owner, config.adminToken);
const app = await buildApp({
  tenantry,
  adminGuard: guard,
  extend: async (instance) => {
    await instance.register(
      tenantScope(
        engine,
        (scope) => {
          scope.get('/open/projects/:id', async (request) =>
            request
              .entityView!.repository('projects')!
              .get(request.db, (request.params as { id: string }).id),
          );
        },
        { allowAnonymous: true },
      ),
    );
  },
});
await serveUntilTerm(app, () => tenantry.close());
