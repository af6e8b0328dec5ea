import Type, { type Static } from 'typebox';
import type { DestructiveChange, MigrationProblem } from '../entities/entity-migration.js';
import type { MigrateReport, MigrationPlanReport, PlannedChange } from './fleet-migration.js';

const Statements = Type.Array(Type.String());
/** A field is named when the change or problem is about one field, not the whole entity. */
const Field = Type.Optional(Type.String());

const DestructiveChangeSchema = Type.Object({
  entity: Type.String(),
  field: Field,
  change: Type.String(),
});

const MigrationProblemSchema = Type.Object({
  entity: Type.String(),
  field: Field,
  message: Type.String(),
});

const PlannedChangeSchema = Type.Object({
  fromVersion: Type.Union([Type.Integer(), Type.Null()], {
    description: 'The entity version these units are at; null: tables not built from any version yet',
  }),
  units: Type.Object({
    shared: Type.Boolean(),
    row: Type.Boolean(),
    schema: Type.Integer({ description: 'Schema tenants at this version' }),
    database: Type.Integer({ description: 'Database tenants at this version' }),
  }),
  changes: Type.Array(Type.String()),
  destructive: Type.Array(DestructiveChangeSchema),
  sql: Type.Object({ shared: Statements, row: Statements, schema: Statements, database: Statements }),
});

/** What `tenantry migrate` would change, per entity version the fleet is at; nothing changed yet. */
export const MigrationPlanSchema = Type.Object({
  targetVersion: Type.Integer(),
  newVersion: Type.Boolean({ description: 'Whether the target is registered only when the plan is applied' }),
  plans: Type.Array(PlannedChangeSchema),
  problems: Type.Array(MigrationProblemSchema, {
    description: 'Why the declared entities cannot be migrated as they are; empty when they can',
  }),
});
export type MigrationPlanView = Static<typeof MigrationPlanSchema>;

function destructiveView(change: DestructiveChange): Static<typeof DestructiveChangeSchema> {
  return {
    entity: change.entity,
    ...(change.field === undefined ? {} : { field: change.field }),
    change: change.change,
  };
}

function problemView(problem: MigrationProblem): Static<typeof MigrationProblemSchema> {
  return {
    entity: problem.entity,
    ...(problem.field === undefined ? {} : { field: problem.field }),
    message: problem.message,
  };
}

function plannedChangeView(step: PlannedChange): Static<typeof PlannedChangeSchema> {
  const { shared, row, schema, database } = step.sql;
  return {
    fromVersion: step.fromVersion,
    units: { ...step.units },
    changes: [...step.changes],
    destructive: step.destructive.map(destructiveView),
    sql: { shared: [...shared], row: [...row], schema: [...schema], database: [...database] },
  };
}

export function migrationPlanView(plan: MigrationPlanReport): MigrationPlanView {
  return {
    targetVersion: plan.targetVersion,
    newVersion: plan.newVersion,
    plans: plan.plans.map(plannedChangeView),
    problems: plan.problems.map(problemView),
  };
}

const TenantIds = Type.Array(Type.String({ format: 'uuid' }));

/** A finished `tenantry migrate`, with the half-done tenants it finished after a complete run. */
export const MigrateReportSchema = Type.Object({
  targetVersion: Type.Integer(),
  total: Type.Integer({
    description: 'Units that were behind: shared tables, row-level tables, tenants with tables of their own',
  }),
  migrated: Type.Integer(),
  failed: Type.Array(
    Type.Object({
      unit: Type.String(),
      tenantId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
      slug: Type.Union([Type.String(), Type.Null()]),
      error: Type.String(),
    }),
  ),
  remaining: Type.Integer({ description: 'Units not attempted (canary, interruption)' }),
  upToDate: Type.Integer({ description: 'Tenants with tables of their own that were already current' }),
  interrupted: Type.Boolean(),
  canary: Type.Boolean(),
  durationMs: Type.Integer(),
  pending: Type.Optional(
    Type.Object(
      {
        repaired: TenantIds,
        purged: TenantIds,
        removed: Type.Optional(TenantIds),
        failed: Type.Array(Type.Object({ tenantId: Type.String({ format: 'uuid' }), error: Type.String() })),
      },
      { description: 'Half-done tenants finished after a complete run (absent after a partial one)' },
    ),
  ),
});
export type MigrateReportView = Static<typeof MigrateReportSchema>;

/** What the lifecycle's `migrateFleet` reports of the tenants it finished (its `PendingReport`). */
interface PendingTenants {
  readonly repaired: readonly string[];
  readonly purged: readonly string[];
  readonly removed?: readonly string[];
  readonly failed: readonly { readonly tenantId: string; readonly error: string }[];
}

export function migrateReportView(
  report: MigrateReport & { readonly pending?: PendingTenants },
): MigrateReportView {
  const { pending } = report;
  return {
    targetVersion: report.targetVersion,
    total: report.total,
    migrated: report.migrated,
    failed: report.failed.map((failure) => ({ ...failure })),
    remaining: report.remaining,
    upToDate: report.upToDate,
    interrupted: report.interrupted,
    canary: report.canary,
    durationMs: report.durationMs,
    ...(pending === undefined
      ? {}
      : {
          pending: {
            repaired: [...pending.repaired],
            purged: [...pending.purged],
            removed: [...(pending.removed ?? [])],
            failed: pending.failed.map((failure) => ({ ...failure })),
          },
        }),
  };
}
