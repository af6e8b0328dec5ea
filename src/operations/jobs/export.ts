import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import Type from 'typebox';
import type { Engine } from '../../engine/engine.js';
import { TenantryError } from '../../errors.js';
import type { Job } from '../../lifecycle/jobs/job-store.js';
import { exportTenant } from '../../lifecycle/tenant-export.js';
import { actorLabel } from '../../runtime/actor.js';
import { recordAudit } from '../../runtime/audit-log.js';
import { defineOperation } from '../operation.js';
import { TenantRef } from '../refs.js';
import { DownloadSchema, ExportJobViewSchema, exportJobView } from './job-view.js';
import { jobFile } from './jobs.js';

const HOUR_SECONDS = 3_600;

/**
 * A tenant's export of its own data (data portability): a job, followed at /api/v1/export/:id and
 * downloaded from /api/v1/export/:id/download by the tenant itself. One at a time per tenant, at
 * most `backups.exportsPerHour` an hour; audited.
 */
export const startExport = defineOperation({
  name: 'export.start',
  summary: 'Start an export of the tenant’s own data: JSON Lines per entity and its users, no secrets',
  access: { operator: true, tenant: 'data:export' },
  input: Type.Object({ tenant: Type.Optional(TenantRef) }, { additionalProperties: false }),
  output: ExportJobViewSchema,
  audit: ['tenant.export'],
  http: [
    {
      method: 'POST',
      path: '/api/v1/export',
      scope: 'tenant',
      status: 202,
      location: (job: { id: string }) => `/api/v1/export/${job.id}`,
    },
  ],
  async run({ tenant: named }, call) {
    const { engine, context } = call;
    const tenant = await call.tenant(named);
    const recent = await engine.jobs.store.recent(tenant.id, 'export', HOUR_SECONDS);
    if (recent.running) throw new TenantryError('conflict', 'an export of this tenant is running already');
    const perHour = engine.live.current.backups.exportsPerHour;
    if (recent.count >= perHour) {
      throw new TenantryError('rate_limited', `at most ${perHour} exports an hour`, {
        retryAfterSeconds: HOUR_SECONDS,
      });
    }
    const directory = join(engine.live.current.backups.directory, 'exports', tenant.id);
    const job = await engine.jobs.start(
      'export',
      tenant.id,
      actorLabel(context.actor),
      {},
      async ({ job: started, progress }) => {
        await mkdir(directory, { recursive: true, mode: 0o700 });
        const file = join(directory, `${started.id}.tar.gz`);
        const partial = `${file}.partial`;
        const out = createWriteStream(partial, { mode: 0o600 });
        try {
          const report = await exportTenant(engine.archives, tenant, out, (rows) =>
            progress({ done: rows, unit: 'rows' }),
          );
          await rename(partial, file);
          await recordAudit(engine.db.owner, context, {
            action: 'tenant.export',
            target: tenant.slug,
            tenantId: tenant.id,
            outcome: 'success',
            details: { job: started.id, rows: report.rows },
          });
          return { result: { ...report, bytes: (await stat(file)).size }, file };
        } catch (error) {
          out.destroy();
          await rm(partial, { force: true });
          throw error;
        }
      },
    );
    return exportJobView(job);
  },
});

/** An export of this tenant; another tenant's job, or a job of another kind, is none. */
async function ownExport(engine: Engine, tenantId: string, id: string): Promise<Job> {
  const job = await engine.jobs.store.find(id);
  if (job?.kind !== 'export' || job.tenantId !== tenantId)
    throw new TenantryError('not_found', 'no such export');
  return job;
}

export const showExport = defineOperation({
  name: 'export.show',
  summary: 'One export of the tenant: its progress, and where to download it once done',
  access: { operator: true, tenant: 'data:export' },
  input: Type.Object(
    { tenant: Type.Optional(TenantRef), id: Type.String({ format: 'uuid' }) },
    { additionalProperties: false },
  ),
  output: ExportJobViewSchema,
  http: [{ method: 'GET', path: '/api/v1/export/:id', scope: 'tenant', params: { id: 'id' } }],
  async run({ tenant: named, id }, call) {
    const tenant = await call.tenant(named);
    return exportJobView(await ownExport(call.engine, tenant.id, id));
  },
});

export const downloadExport = defineOperation({
  name: 'export.download',
  summary: 'Download a finished export of the tenant (a tar.gz of JSON Lines)',
  access: { operator: true, tenant: 'data:export' },
  input: Type.Object(
    { tenant: Type.Optional(TenantRef), id: Type.String({ format: 'uuid' }) },
    { additionalProperties: false },
  ),
  output: DownloadSchema,
  audit: ['tenant.export.download'],
  http: [
    {
      method: 'GET',
      path: '/api/v1/export/:id/download',
      scope: 'tenant',
      params: { id: 'id' },
      download: (file: { file: string; name: string }) => ({ ...file, type: 'application/gzip' }),
    },
  ],
  async run({ tenant: named, id }, call) {
    const tenant = await call.tenant(named);
    const job = await ownExport(call.engine, tenant.id, id);
    const file = await jobFile(job);
    await recordAudit(call.engine.db.owner, call.context, {
      action: 'tenant.export.download',
      target: tenant.slug,
      tenantId: tenant.id,
      outcome: 'success',
      details: { job: job.id },
    });
    return file;
  },
});

export const exportOperations = [startExport, showExport, downloadExport] as const;
