import Type, { type Static } from 'typebox';
import type { Engine } from '../../engine/engine.js';
import type { JobContext } from '../../lifecycle/jobs/job-runner.js';
import {
  finishMove,
  type MoveReport,
  type MoveRequest,
  moveTenant,
} from '../../lifecycle/move/tenant-move.js';
import type { ActionContext } from '../../runtime/actor.js';
import { actorLabel } from '../../runtime/actor.js';
import { adminDownloadPath, JobViewSchema, jobView } from '../jobs/job-view.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';

/** The kind of a move's job: followable with `jobs show`, stoppable with `jobs cancel`. */
export const MOVE_JOB = 'move';

const PlaceSchema = Type.Object({
  isolation: Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]),
  server: Type.Union([Type.String(), Type.Null()]),
});

const MoveInput = Type.Object(
  {
    tenant: TenantRef,
    to: Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')], {
      description: 'The isolation level to move to',
    }),
    server: Type.Optional(
      Type.String({
        pattern: '^[a-z][a-z0-9-]{0,39}$',
        description: 'The database server of a database target (default: the one with the fewest tenants)',
      }),
    ),
    keepSource: Type.Optional(
      Type.Boolean({ description: 'Keep the old copy (sealed) until the move is finished by hand' }),
    ),
  },
  { additionalProperties: false },
);

export const MoveReportSchema = Type.Object({
  tenantId: Type.String({ format: 'uuid' }),
  from: PlaceSchema,
  to: PlaceSchema,
  rows: Type.Integer({ description: 'Rows in the bulk copy' }),
  changesApplied: Type.Integer({ description: 'Rows changed during the copy and applied after it' }),
  rounds: Type.Integer(),
  freezeMs: Type.Number({ description: 'How long the tenant’s writes were held' }),
  totalMs: Type.Number(),
  sourceDropped: Type.Boolean({
    description: 'False: the old copy is kept until the grace period ends, or --finish',
  }),
});
export type MoveReportView = Static<typeof MoveReportSchema>;

function moveReportView(report: MoveReport): MoveReportView {
  return {
    ...report,
    from: { ...report.from },
    to: { ...report.to },
    freezeMs: Math.round(report.freezeMs),
    totalMs: Math.round(report.totalMs),
  };
}

function request(input: Static<typeof MoveInput>): MoveRequest {
  return { to: input.to, server: input.server, keepSource: input.keepSource };
}

function moveWork(engine: Engine, tenantId: string, input: Static<typeof MoveInput>, context: ActionContext) {
  return async (job: JobContext, onProgress?: JobContext['progress']) => {
    const report = await moveTenant(engine.moves, tenantId, request(input), context, {
      jobId: job.job.id,
      cancelled: job.cancelled,
      onProgress: ({ step, done, total, unit }) => {
        const progress = { done, unit: `${unit} (${step})`, ...(total === undefined ? {} : { total }) };
        job.progress(progress);
        onProgress?.(progress);
      },
    });
    return { result: moveReportView(report), file: null };
  };
}

export const moveTenantOperation = defineOperation({
  name: 'tenants.move',
  summary:
    'Move a tenant to another isolation level or database server while it serves; waits for the end (a job: `jobs show`, `jobs cancel`)',
  access: { operator: true },
  input: MoveInput,
  output: MoveReportSchema,
  audit: ['tenant.move'],
  async run(input, { engine, context, progress }) {
    const tenant = await engine.store.get(input.tenant);
    const work = moveWork(engine, tenant.id, input, context);
    const outcome = await engine.jobs.run(
      MOVE_JOB,
      tenant.id,
      actorLabel(context.actor),
      request(input),
      (job) => work(job, progress),
    );
    return outcome.result as MoveReportView;
  },
});

export const startMove = defineOperation({
  name: 'tenants.startMove',
  summary:
    'Start moving a tenant to another isolation level or database server, as a job; follow it at /admin/jobs/:id',
  access: { operator: true },
  input: MoveInput,
  output: JobViewSchema,
  audit: ['tenant.move'],
  http: [
    {
      method: 'POST',
      path: '/admin/tenants/:idOrSlug/move',
      scope: 'admin',
      params: BY_TENANT,
      status: 202,
      location: (job: { id: string }) => `/admin/jobs/${job.id}`,
    },
  ],
  async run(input, { engine, context }) {
    const tenant = await engine.store.get(input.tenant);
    const work = moveWork(engine, tenant.id, input, context);
    const job = await engine.jobs.start(
      MOVE_JOB,
      tenant.id,
      actorLabel(context.actor),
      request(input),
      (started) => work(started),
    );
    return jobView(job, adminDownloadPath(job));
  },
});

export const finishMoveOperation = defineOperation({
  name: 'tenants.finishMove',
  summary: 'Drop the old copy a finished move kept (with keepSource, or before its grace period ended)',
  access: { operator: true },
  input: Type.Object({ tenant: TenantRef }, { additionalProperties: false }),
  output: Type.Object({ dropped: PlaceSchema }),
  audit: ['tenant.move.finish'],
  http: [{ method: 'POST', path: '/admin/tenants/:idOrSlug/move/finish', scope: 'admin', params: BY_TENANT }],
  async run({ tenant }, { engine, context }) {
    const dropped = await finishMove(engine.moves, tenant, context);
    return { dropped: { ...dropped } };
  },
});
