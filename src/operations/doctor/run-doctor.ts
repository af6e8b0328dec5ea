import Type from 'typebox';
import type { Engine } from '../../engine/engine.js';
import {
  checkConnections,
  checkPostgresVersion,
  checkRuntimeLogin,
  checkRuntimeRole,
  checkTenantDatabases,
  type DeploymentCheck,
} from '../../isolation/deployment-checks.js';
import { defineOperation } from '../operation.js';

const CheckSchema = Type.Object({
  name: Type.String(),
  status: Type.Union([Type.Literal('ok'), Type.Literal('warn'), Type.Literal('fail')]),
  detail: Type.String(),
  fix: Type.Optional(Type.String()),
});

/** Redis, when configured, shares limits and the tenant cache between processes. */
async function checkRedis(engine: Engine): Promise<DeploymentCheck> {
  const name = 'Redis';
  if (!engine.config.redisUrl)
    return { name, status: 'ok', detail: 'not configured: each process limits on its own' };
  const up = engine.redis ? await engine.redis.ready(2_000) : false;
  return up
    ? { name, status: 'ok', detail: 'reachable' }
    : {
        name,
        status: 'fail',
        detail:
          'REDIS_URL is set but Redis does not answer: limits and the tenant cache are per process until it does',
        fix: 'start Redis, or check REDIS_URL',
      };
}

/** The entities the tables are at, against the declared ones. */
async function checkEntities(engine: Engine): Promise<DeploymentCheck> {
  const name = 'entities';
  const plan = await engine.fleet.plan();
  if (plan.problems.length > 0) {
    return {
      name,
      status: 'fail',
      detail: `the declared entities cannot be migrated: ${plan.problems.map((problem) => problem.message).join('; ')}`,
      fix: 'fix the entities in the config file (tenantry migrate --plan shows the change)',
    };
  }
  const behind = plan.plans.reduce(
    (sum, step) =>
      sum + step.units.schema + step.units.database + (step.units.row ? 1 : 0) + (step.units.shared ? 1 : 0),
    0,
  );
  if (behind > 0) {
    return {
      name,
      status: 'warn',
      detail: `${behind} unit(s) (tenants, the row-level or shared tables) are behind entity version ${plan.targetVersion}`,
      fix: 'run tenantry migrate',
    };
  }
  return { name, status: 'ok', detail: `every tenant is at entity version ${plan.targetVersion}` };
}

/**
 * Checks a deployment and says what to fix: the logins and the runtime role (what tenant code
 * could do), tenant databases' grants, Redis, connection budgets, PostgreSQL's version and the
 * entities. `ok` is false when any check fails; warnings are advice.
 */
export const runDoctor = defineOperation({
  name: 'doctor.run',
  summary: 'Check this deployment: logins and roles, tenant databases, Redis, connections, version, entities',
  access: { operator: true },
  input: Type.Object({}, { additionalProperties: false }),
  output: Type.Object({ ok: Type.Boolean(), checks: Type.Array(CheckSchema) }),
  http: [{ method: 'GET', path: '/admin/doctor', scope: 'admin' }],
  async run(_input, { engine }) {
    const { db, config } = engine;
    const checks: DeploymentCheck[] = [];
    for (const check of [
      () => checkRuntimeLogin(db, config),
      () => checkRuntimeRole(db, config),
      () => checkTenantDatabases(db),
      () => checkRedis(engine),
      () => checkConnections(db, config),
      () => checkPostgresVersion(db),
      () => checkEntities(engine),
    ]) {
      checks.push(await check());
    }
    return { ok: checks.every((check) => check.status !== 'fail'), checks };
  },
});
