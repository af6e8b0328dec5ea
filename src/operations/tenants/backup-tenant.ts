import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import Type, { type Static } from 'typebox';
import { IssuedKeySchema, issuedKeyView } from '../../auth/api-key-view.js';
import { TenantryError } from '../../errors.js';
import { backupKey } from '../../lifecycle/archive/archive-encryption.js';
import { type BackupReport, backupTenantToFile } from '../../lifecycle/tenant-backup.js';
import { type RestoreReport, restoreTenant } from '../../lifecycle/tenant-restore.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';
import { TenantRef } from '../refs.js';

const File = Type.String({
  minLength: 2,
  maxLength: 4096,
  description: 'An absolute path on the machine that runs the operation',
});

const Key = Type.String({
  maxLength: 200,
  description:
    'The backup key (64 hex digits or 44 base64 characters); default: TENANTRY_BACKUP_KEY where the engine runs',
});

export const BackupReportSchema = Type.Object({
  tenant: Type.Object({ id: Type.String({ format: 'uuid' }), slug: Type.String() }),
  file: Type.String(),
  bytes: Type.Integer(),
  rows: Type.Integer(),
  entityVersion: Type.Integer(),
  encrypted: Type.Boolean(),
  sections: Type.Array(
    Type.Object({
      section: Type.String(),
      rows: Type.Integer(),
      bytes: Type.Integer(),
      sha256: Type.String(),
    }),
  ),
});
export type BackupReportView = Static<typeof BackupReportSchema>;

export function backupReportView(report: BackupReport, file: string, bytes: number): BackupReportView {
  return {
    tenant: { id: report.tenant.id, slug: report.tenant.slug },
    file,
    bytes,
    rows: report.rows,
    entityVersion: report.entityVersion,
    encrypted: report.encrypted,
    sections: report.sections.map((section) => ({ ...section })),
  };
}

export const RestoreReportSchema = Type.Object({
  tenant: TenantViewSchema,
  apiKey: Type.Optional(IssuedKeySchema),
  replaced: Type.Boolean({ description: 'True when an existing tenant’s rows were replaced (no new key)' }),
  rows: Type.Integer(),
  entityVersion: Type.Object({ archive: Type.Integer(), restored: Type.Integer() }),
  users: Type.Integer({ description: 'Users restored' }),
  skippedUsers: Type.Array(Type.String(), { description: 'Emails left out: other accounts hold them' }),
  hosts: Type.Array(Type.String()),
  skippedHosts: Type.Array(Type.String(), { description: 'Hosts left out: other tenants hold them' }),
  notRestored: Type.Record(Type.String(), Type.Integer(), {
    description: 'Records of the archive a new tenant does not get back (keys, clients, audit), by section',
  }),
});
export type RestoreReportView = Static<typeof RestoreReportSchema>;

export function restoreReportView(report: RestoreReport): RestoreReportView {
  return {
    tenant: tenantView(report.tenant),
    ...(report.apiKey ? { apiKey: issuedKeyView(report.apiKey) } : {}),
    replaced: report.replaced,
    rows: report.rows,
    entityVersion: { ...report.entityVersion },
    users: report.users,
    skippedUsers: [...report.skippedUsers],
    hosts: [...report.hosts],
    skippedHosts: [...report.skippedHosts],
    notRestored: { ...report.notRestored },
  };
}

function absolute(file: string): string {
  if (!isAbsolute(file)) {
    throw new TenantryError('validation_failed', 'file must be an absolute path', { field: 'file' });
  }
  return file;
}

export const backupTenant = defineOperation({
  name: 'tenants.backup',
  summary:
    'Back up one tenant into an archive file: its rows as of one snapshot, and its users, roles, groups and hosts',
  access: { operator: true },
  input: Type.Object(
    {
      tenant: TenantRef,
      file: File,
      includeAudit: Type.Optional(Type.Boolean()),
      key: Type.Optional(Key),
    },
    { additionalProperties: false },
  ),
  output: BackupReportSchema,
  audit: ['tenant.backup'],
  async run({ tenant, file, includeAudit, key }, { engine, context, progress }) {
    const target = absolute(file);
    const encryption = backupKey(key);
    const report = await backupTenantToFile(engine.archives, tenant, target, context, {
      includeAudit: includeAudit === true,
      onProgress: ({ rows, total }) => progress({ done: rows, total, unit: 'rows' }),
      ...(encryption ? { key: encryption } : {}),
    });
    return backupReportView(report, target, (await stat(target)).size);
  },
});

export const restoreTenantOperation = defineOperation({
  name: 'tenants.restore',
  summary: 'Restore an archive into a new tenant, at any isolation level and on any server',
  access: { operator: true },
  input: Type.Object(
    {
      file: File,
      as: Type.Optional(Type.String({ maxLength: 63, description: 'The new tenant’s slug' })),
      isolation: Type.Optional(
        Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]),
      ),
      server: Type.Optional(Type.String({ maxLength: 40 })),
      skipConflictingUsers: Type.Optional(Type.Boolean()),
      replace: Type.Optional(
        Type.Boolean({
          description:
            'Replace the rows of an existing tenant (`as`, else the archive’s own) in one transaction; its users, keys and hosts stay',
        }),
      ),
      key: Type.Optional(Key),
    },
    { additionalProperties: false },
  ),
  output: RestoreReportSchema,
  audit: ['tenant.restore', 'tenant.restore.replace'],
  async run(
    { file, key, as, isolation, server, skipConflictingUsers, replace },
    { engine, context, progress },
  ) {
    const source = absolute(file);
    const found = await stat(source).catch(() => undefined);
    if (!found?.isFile()) {
      throw new TenantryError('validation_failed', `no archive file ${source}`, { field: 'file' });
    }
    const encryption = backupKey(key);
    const input = createReadStream(source);
    const report = await restoreTenant(engine.archives, input, context, {
      onProgress: () => progress({ done: input.bytesRead, total: found.size, unit: 'bytes' }),
      ...(as === undefined ? {} : { as }),
      ...(isolation === undefined ? {} : { isolation }),
      ...(server === undefined ? {} : { server }),
      ...(encryption ? { key: encryption } : {}),
      skipConflictingUsers: skipConflictingUsers === true,
      replace: replace === true,
    });
    return restoreReportView(report);
  },
});
