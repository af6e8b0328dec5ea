import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { BACKUP_KEY_VARIABLE, parseBackupKey } from '../../lifecycle/archive/archive-encryption.js';
import { sectionKey } from '../../lifecycle/archive/archive-format.js';
import { verifyArchive } from '../../lifecycle/archive/archive-reader.js';
import { type CliContext, usageError } from '../cli-context.js';

/** `tenantry tenants verify` (and, as issue 18 goes on, backup and restore). */
export function backupCommands(tenants: Command, cli: CliContext): void {
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
