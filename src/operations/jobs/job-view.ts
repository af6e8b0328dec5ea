import Type, { type Static } from 'typebox';
import type { Job } from '../../lifecycle/jobs/job-store.js';

export const JobViewSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  kind: Type.String({ description: '`backup`, `export`, `scheduled-backups`' }),
  tenantId: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
  status: Type.Union([
    Type.Literal('running'),
    Type.Literal('succeeded'),
    Type.Literal('failed'),
    Type.Literal('interrupted'),
  ]),
  actor: Type.String(),
  progress: Type.Union([
    Type.Object({ done: Type.Number(), total: Type.Optional(Type.Number()), unit: Type.String() }),
    Type.Null(),
  ]),
  result: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
  /** Where its file is downloaded from, once it succeeded and made one. */
  download: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String({ format: 'date-time' }),
  finishedAt: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
});
export type JobView = Static<typeof JobViewSchema>;

/** A job as operators see it; `downloadPath` names its file's route when there is one. */
export function jobView(job: Job, downloadPath: string): JobView {
  return {
    id: job.id,
    kind: job.kind,
    tenantId: job.tenantId,
    status: job.status,
    actor: job.actor,
    progress: job.progress ? { ...job.progress } : null,
    result: job.result ? { ...job.result } : null,
    error: job.error ? { ...job.error } : null,
    download: job.status === 'succeeded' && job.file ? downloadPath : null,
    createdAt: job.createdAt.toISOString(),
    finishedAt: job.finishedAt?.toISOString() ?? null,
  };
}

/** A tenant's own export as it sees it: nothing of who else or which tenant id. */
export const ExportJobViewSchema = Type.Omit(JobViewSchema, ['tenantId', 'actor', 'kind']);
export type ExportJobView = Static<typeof ExportJobViewSchema>;

export function exportJobView(job: Job): ExportJobView {
  const {
    tenantId: _tenant,
    actor: _actor,
    kind: _kind,
    ...view
  } = jobView(job, `/api/v1/export/${job.id}/download`);
  return view;
}

export const adminDownloadPath = (job: Job) => `/admin/jobs/${job.id}/download`;

export const DownloadSchema = Type.Object({
  file: Type.String({ description: 'Where the file is, on the machine that made it' }),
  name: Type.String({ description: 'Its name for a download' }),
  bytes: Type.Integer(),
});
