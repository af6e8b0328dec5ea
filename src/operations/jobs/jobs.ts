import { mkdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import Type from 'typebox';
import { TenantryError } from '../../errors.js';
import { backupKey } from '../../lifecycle/archive/archive-encryption.js';
import type { Job } from '../../lifecycle/jobs/job-store.js';
import { backupTenantToFile } from '../../lifecycle/tenant-backup.js';
import { actorLabel } from '../../runtime/actor.js';
import { defineOperation } from '../operation.js';
import { BY_TENANT, TenantRef } from '../refs.js';
import { backupReportView } from '../tenants/backup-tenant.js';
import { adminDownloadPath, DownloadSchema, JobViewSchema, jobView } from './job-view.js';

const JobId = Type.String({ format: 'uuid', description: 'The job’s id' });

export const listJobs = defineOperation({
  name: 'jobs.list',
  summary: 'Background jobs (backups, exports), newest first, with their progress and outcome',
  access: { operator: true },
  input: Type.Object(
    {
      tenant: Type.Optional(TenantRef),
      kind: Type.Optional(Type.String({ maxLength: 40 })),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Default 100' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({ items: Type.Array(JobViewSchema) }),
  http: [{ method: 'GET', path: '/admin/jobs', scope: 'admin', query: ['tenant', 'kind', 'limit'] }],
  async run({ tenant, kind, limit }, call) {
    const tenantId =
      tenant === undefined ? undefined : (await call.tenant(tenant, { includeDeleted: true })).id;
    const jobs = await call.engine.jobs.store.list({
      ...(tenantId ? { tenantId } : {}),
      ...(kind ? { kind } : {}),
      ...(limit ? { limit } : {}),
    });
    return { items: jobs.map((job) => jobView(job, adminDownloadPath(job))) };
  },
});

export const showJob = defineOperation({
  name: 'jobs.show',
  summary: 'One background job: its progress, and its result or error',
  access: { operator: true },
  input: Type.Object({ id: JobId }, { additionalProperties: false }),
  output: JobViewSchema,
  http: [{ method: 'GET', path: '/admin/jobs/:id', scope: 'admin', params: { id: 'id' } }],
  async run({ id }, { engine }) {
    const job = await engine.jobs.store.get(id);
    return jobView(job, adminDownloadPath(job));
  },
});

export const startBackup = defineOperation({
  name: 'tenants.startBackup',
  summary:
    'Start a backup of one tenant as a job; follow it at /admin/jobs/:id, download it when it succeeded',
  access: { operator: true },
  input: Type.Object(
    { tenant: TenantRef, includeAudit: Type.Optional(Type.Boolean()) },
    { additionalProperties: false },
  ),
  output: JobViewSchema,
  audit: ['tenant.backup'],
  http: [
    {
      method: 'POST',
      path: '/admin/tenants/:idOrSlug/backups',
      scope: 'admin',
      params: BY_TENANT,
      status: 202,
      location: (job: { id: string }) => `/admin/jobs/${job.id}`,
    },
  ],
  async run({ tenant, includeAudit }, { engine, context }) {
    const found = await engine.store.get(tenant);
    // Checked before the job starts: a wrong key is the caller's error, not a failed job.
    const key = backupKey(undefined);
    const directory = join(engine.live.current.backups.directory, found.id);
    const job = await engine.jobs.start(
      'backup',
      found.id,
      actorLabel(context.actor),
      { includeAudit: includeAudit === true },
      async ({ job: started, progress }) => {
        await mkdir(directory, { recursive: true, mode: 0o700 });
        const file = join(directory, `${started.id}.tenantry.tgz`);
        const report = await backupTenantToFile(engine.archives, found.id, file, context, {
          includeAudit: includeAudit === true,
          ...(key ? { key } : {}),
          onProgress: ({ rows, total }) => progress({ done: rows, total, unit: 'rows' }),
        });
        const { size } = await stat(file);
        return { result: backupReportView(report, file, size), file };
      },
    );
    return jobView(job, adminDownloadPath(job));
  },
});

/** Kinds of jobs that stop half-way when asked, leaving nothing half-done. */
const CANCELLABLE = ['move'];

export const cancelJob = defineOperation({
  name: 'jobs.cancel',
  summary: 'Ask a running job to stop (moves: before their switch, the tenant stays where it was)',
  access: { operator: true },
  input: Type.Object({ id: JobId }, { additionalProperties: false }),
  output: JobViewSchema,
  http: [
    { method: 'POST', path: '/admin/jobs/:id/cancel', scope: 'admin', params: { id: 'id' }, status: 202 },
  ],
  async run({ id }, { engine }) {
    const job = await engine.jobs.store.requestCancel(id, CANCELLABLE);
    return jobView(job, adminDownloadPath(job));
  },
});

/** A finished job's file, when it made one that is still there. */
export async function jobFile(job: Job): Promise<{ file: string; name: string; bytes: number }> {
  if (job.status !== 'succeeded' || !job.file) {
    throw new TenantryError(
      'not_found',
      job.status === 'running' ? 'the job is still running' : 'the job made no file',
    );
  }
  const found = await stat(job.file).catch(() => undefined);
  if (!found?.isFile()) throw new TenantryError('not_found', 'the job’s file is gone');
  return { file: job.file, name: basename(job.file), bytes: found.size };
}

export const downloadJob = defineOperation({
  name: 'jobs.download',
  summary: 'Download what a finished job made (a backup archive)',
  access: { operator: true },
  input: Type.Object({ id: JobId }, { additionalProperties: false }),
  output: DownloadSchema,
  http: [
    {
      method: 'GET',
      path: '/admin/jobs/:id/download',
      scope: 'admin',
      params: { id: 'id' },
      download: (file: { file: string; name: string }) => ({ ...file, type: 'application/gzip' }),
    },
  ],
  async run({ id }, { engine }) {
    return jobFile(await engine.jobs.store.get(id));
  },
});

export const jobOperations = [listJobs, showJob, startBackup, downloadJob, cancelJob] as const;
