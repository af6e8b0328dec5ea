import type { EntitySchemas } from '../isolation/entity-schemas.js';
import type { FleetMigration, MigrateOptions, MigrateReport } from '../isolation/fleet-migration.js';
import type { TenantDatabases } from '../isolation/tenant-databases.js';
import type { ActionContext } from '../runtime/actor.js';
import { recordAudit } from '../runtime/audit-log.js';
import type { LifecycleDeps } from './lifecycle-deps.js';
import { finishPendingTenants, type PendingReport } from './tenant-repair.js';

/** What `tenantry migrate` works with (the engine has each under these names). */
export interface MigrateFleetDeps {
  readonly lifecycle: LifecycleDeps;
  readonly fleet: Pick<FleetMigration, 'migrate'>;
  readonly schemas: Pick<EntitySchemas, 'load'>;
  /** Tenant databases, when there can be any: their templates of older versions are dropped. */
  readonly databases: TenantDatabases | undefined;
  /** Where a failure to audit goes: the migration itself is done by then. */
  readonly onBackgroundError: (error: unknown) => void;
}

/** A migration's report, with the half-done tenants it finished after a complete run. */
export interface MigrateFleetReport extends MigrateReport {
  readonly pending?: PendingReport;
}

/**
 * `tenantry migrate`: every tenant's tables to the declared entities. Only a complete run (not a
 * canary, not interrupted, no failure) goes on to finish half-done tenants, which are then built
 * at the version just reached, and to drop the database templates of older versions.
 */
export async function migrateFleet(
  deps: MigrateFleetDeps,
  options: MigrateOptions,
  context: ActionContext,
): Promise<MigrateFleetReport> {
  const report = await deps.fleet.migrate(options);
  // The ledger moved: this process reads the new version and the shared tables' version before
  // it builds or serves anything at them.
  await deps.schemas.load(false);
  const { db, provisioner } = deps.lifecycle;
  await recordAudit(db.owner, context, {
    action: 'entities.migrate',
    outcome: report.failed.length > 0 || report.interrupted ? 'failure' : 'success',
    target: `version ${report.targetVersion}`,
    details: {
      migrated: report.migrated,
      failed: report.failed.map((failure) => failure.tenantId ?? failure.unit),
      remaining: report.remaining,
      canary: report.canary,
    },
  }).catch(deps.onBackgroundError);
  if (report.canary || report.interrupted || report.failed.length > 0) return report;
  const pending = await finishPendingTenants(deps.lifecycle, context);
  if (deps.databases) {
    await db.owner.withSession((session) => provisioner.dropTemplates(session, report.targetVersion));
  }
  return { ...report, pending };
}
