import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { type Command, Option } from 'commander';
import { BACKUP_KEY_VARIABLE, parseBackupKey } from '../../lifecycle/archive/archive-encryption.js';
import { sectionKey } from '../../lifecycle/archive/archive-format.js';
import { verifyArchive } from '../../lifecycle/archive/archive-reader.js';
import { backupTenant, restoreTenantOperation } from '../../operations/tenants/backup-tenant.js';
import { type CliContext, command, type GlobalOptions, usageError } from '../cli-context.js';
import { progressReporter } from '../progress.js';
import { printTenant } from './tenant-commands.js';

/** `tenantry tenants backup|restore|verify`. */
export function backupCommands(tenants: Command, cli: CliContext): void {
  backupCommand(tenants, cli);
  restoreCommand(tenants, cli);
  verifyCommand(tenants, cli);
}

/** The key from the environment, checked before any work; undefined when none is set. */
function keyFromEnv(cli: CliContext): string | undefined {
  const text = cli.env[BACKUP_KEY_VARIABLE];
  if (text === undefined || text === '') return undefined;
  parseBackupKey(text);
  return text;
}

function progressMode(cli: CliContext, json: boolean | undefined): 'bar' | 'lines' | 'none' {
  if (json) return 'none';
  return cli.interactive ? 'bar' : 'lines';
}

/** `acme-20261207T211500Z.tenantry.tgz` */
function defaultArchiveName(tenant: string, now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  return `${tenant.replace(/[^a-z0-9-]/gi, '_')}-${stamp}.tenantry.tgz`;
}

function backupCommand(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  command(
    tenants,
    'backup',
    `back up one tenant into an archive file, while it goes on serving (${BACKUP_KEY_VARIABLE} encrypts it)`,
  )
    .argument('<tenant>', 'id or slug')
    .option('-o, --output <file>', 'the archive to write (default: <tenant>-<time>.tenantry.tgz here)')
    .option('--include-audit', "the tenant's audit trail too")
    .action(async (tenant: string, options: GlobalOptions & { output?: string; includeAudit?: boolean }) => {
      const key = keyFromEnv(cli);
      const file = resolve(cli.cwd, options.output ?? defaultArchiveName(tenant));
      const progress = progressReporter(cli.stderr, out, 'backing up', progressMode(cli, options.json));
      const report = await cli
        .operations(options, (run) =>
          run(
            backupTenant,
            {
              tenant,
              file,
              ...(options.includeAudit ? { includeAudit: true } : {}),
              ...(key ? { key } : {}),
            },
            { onProgress: (event) => progress.update(event) },
          ),
        )
        .finally(() => progress.stop());
      if (options.json) return out.json(report);
      out.line(`tenant:    ${report.tenant.slug} (${report.tenant.id})`);
      out.line(`archive:   ${report.file} (${report.bytes} bytes${report.encrypted ? ', encrypted' : ''})`);
      out.line(`rows:      ${report.rows} at entity version ${report.entityVersion}`);
    });
}

interface RestoreOptions extends GlobalOptions {
  as?: string;
  isolation?: 'row' | 'schema' | 'database';
  server?: string;
  skipConflictingUsers?: boolean;
  replace?: boolean;
}

function restoreCommand(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  command(
    tenants,
    'restore',
    'restore an archive into a new tenant at any isolation level, printing its new API key (shown once), or over an existing one (--replace)',
  )
    .argument('<file>', 'the archive')
    .option('--as <slug>', "the new tenant's slug (default: the archive's, when it is free)")
    .addOption(
      new Option('--isolation <level>', "where its rows go (default: the archive's)").choices([
        'row',
        'schema',
        'database',
      ]),
    )
    .option('--server <name>', 'database server of a database tenant')
    .option(
      '--skip-conflicting-users',
      'leave out users whose emails other accounts hold (refused otherwise)',
    )
    .option(
      '--replace',
      "replace the rows of an existing tenant (--as, else the archive's own) in one step; its users, keys and hosts stay",
    )
    .action(async (file: string, options: RestoreOptions) => {
      const key = keyFromEnv(cli);
      const source = resolve(cli.cwd, file);
      const found = await stat(source).catch(() => undefined);
      if (!found?.isFile()) throw usageError('fileNotFound', `no archive file ${file}`);
      const progress = progressReporter(cli.stderr, out, 'restoring', progressMode(cli, options.json));
      const report = await cli
        .operations(options, (run) =>
          run(
            restoreTenantOperation,
            {
              file: source,
              ...(options.as === undefined ? {} : { as: options.as }),
              ...(options.isolation === undefined ? {} : { isolation: options.isolation }),
              ...(options.server === undefined ? {} : { server: options.server }),
              ...(options.skipConflictingUsers ? { skipConflictingUsers: true } : {}),
              ...(options.replace ? { replace: true } : {}),
              ...(key ? { key } : {}),
            },
            { onProgress: (event) => progress.update(event) },
          ),
        )
        .finally(() => progress.stop());
      if (options.json) return out.json(report);
      printTenant(out, report.tenant);
      out.line(
        `rows:      ${report.rows} (entity version ${report.entityVersion.archive} -> ${report.entityVersion.restored})`,
      );
      if (report.replaced) {
        out.line("replaced:  its rows are the archive's now; its users, keys and hosts are as they were");
        return;
      }
      out.line(
        `users:     ${report.users} restored${report.skippedUsers.length > 0 ? `, left out (email taken): ${report.skippedUsers.join(', ')}` : ''}`,
      );
      if (report.skippedHosts.length > 0)
        out.error(`hosts left out (other tenants hold them): ${report.skippedHosts.join(', ')}`);
      const notRestored = Object.entries(report.notRestored).map(([section, count]) => `${count} ${section}`);
      if (notRestored.length > 0)
        out.line(`not restored: ${notRestored.join(', ')} (a new tenant gets new credentials)`);
      if (report.apiKey) {
        out.line(`api key:   ${report.apiKey.key}`);
        out.error(report.apiKey.warning);
      }
    });
}

function verifyCommand(tenants: Command, cli: CliContext): void {
  const { out } = cli;
  tenants
    .command('verify')
    .description(
      `check a backup archive: its structure, format version and every checksum, without any database (${BACKUP_KEY_VARIABLE} for an encrypted one)`,
    )
    .argument('<file>', 'the archive')
    .option('--json', 'print JSON')
    .action(async (file: string, options: { json?: boolean }) => {
      const found = await stat(file).catch(() => undefined);
      if (!found?.isFile()) throw usageError('fileNotFound', `no archive file ${file}`);
      const keyText = cli.env[BACKUP_KEY_VARIABLE];
      const key = keyText === undefined || keyText === '' ? undefined : parseBackupKey(keyText);
      const { header, manifest } = await verifyArchive(createReadStream(file), key ? { key } : {});
      const sections = header.sections.map((section) => ({
        section: sectionKey(section),
        ...manifest.sections[sectionKey(section)]!,
      }));
      if (options.json) {
        out.json({
          ok: true,
          formatVersion: header.formatVersion,
          tenant: header.tenant,
          entities: header.entities.version,
          sections,
        });
        return;
      }
      const tenant = header.tenant as { slug?: string; id?: string; isolation?: string };
      out.line(
        `archive:   ${file}: intact (format version ${header.formatVersion}${key ? ', encrypted' : ''})`,
      );
      out.line(
        `tenant:    ${tenant.slug ?? '?'} (${tenant.id ?? '?'}), ${tenant.isolation ?? '?'} isolation`,
      );
      out.line(
        `taken:     ${header.createdAt} by Tenantry ${header.tenantryVersion}, entity version ${header.entities.version}`,
      );
      out.table(sections, ['section', 'rows', 'bytes', 'sha256']);
    });
}
