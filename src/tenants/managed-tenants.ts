import { basename } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { Queryable } from '../db/database.js';
import { TenantryError } from '../errors.js';
import type { ActionContext, Actor } from '../runtime/actor.js';
import { CONFIG_SECTIONS, type ManagedField, type Tenant, type TenantConfig } from './tenant.js';

/** The actor of the static-tenant sync; only this object (never one from a request) passes the guard. */
export const CONFIG_FILE_ACTOR: Actor = Object.freeze({ kind: 'system', id: 'config' });
export const CONFIG_FILE_CONTEXT: ActionContext = Object.freeze({ actor: CONFIG_FILE_ACTOR });

interface Management {
  readonly managedBy: string | null;
  readonly fields: readonly string[];
}

async function managementOf(tx: Queryable, tenantId: string): Promise<Management> {
  const { rows } = await tx.query<{ managed_by: string | null; managed_fields: string[] | null }>(
    'SELECT managed_by, managed_fields FROM tenantry.tenants WHERE id = $1',
    [tenantId],
  );
  return { managedBy: rows[0]?.managed_by ?? null, fields: rows[0]?.managed_fields ?? [] };
}

/** What a change would alter of a tenant: only real differences count, so a PUT of the same values passes. */
export function changedFields(
  current: Tenant,
  next: {
    name?: string | undefined;
    slug?: string | undefined;
    hosts?: readonly string[] | undefined;
    config?: TenantConfig | undefined;
  },
): ManagedField[] {
  const fields: ManagedField[] = [];
  if (next.slug !== undefined && next.slug !== current.slug) fields.push('slug');
  if (next.name !== undefined && next.name !== current.name) fields.push('name');
  if (next.hosts !== undefined && !isDeepStrictEqual([...next.hosts].sort(), [...current.hosts].sort()))
    fields.push('hosts');
  if (next.config !== undefined) {
    for (const section of CONFIG_SECTIONS) {
      if (!isDeepStrictEqual(current.config[section], next.config[section])) fields.push(section);
    }
  }
  return fields;
}

/**
 * Refuses (409 `conflict`) a change to fields of a tenant that the config file declares: the
 * file would put them back at the next reload. Runs inside the change's transaction, after the
 * tenant row is locked, so it cannot race with a sync. The sync itself passes.
 */
export async function assertNotManaged(
  tx: Queryable,
  tenant: Tenant,
  fields: readonly ManagedField[],
  context: ActionContext,
): Promise<void> {
  if (fields.length === 0 || context.actor === CONFIG_FILE_ACTOR) return;
  const { managedBy, fields: managed } = await managementOf(tx, tenant.id);
  if (managedBy === null) return;
  const refused = fields.filter((field) => managed.includes(field));
  if (refused.length === 0) return;
  throw new TenantryError(
    'conflict',
    `tenant "${tenant.slug}" is declared in the config file ${basename(managedBy)}, which sets its ${refused.join(', ')}: ` +
      'change it there and reload the server (SIGHUP)',
    { field: refused[0] },
  );
}

/** Refuses to delete a tenant the config file declares: the next sync would create it again. */
export async function assertNotDeclared(
  tx: Queryable,
  tenant: Tenant,
  context: ActionContext,
): Promise<void> {
  if (context.actor === CONFIG_FILE_ACTOR) return;
  const { managedBy } = await managementOf(tx, tenant.id);
  if (managedBy === null) return;
  throw new TenantryError(
    'conflict',
    `tenant "${tenant.slug}" is declared in the config file ${basename(managedBy)}: remove it there and ` +
      'reload the server (it is deactivated), then delete it',
    { field: 'slug' },
  );
}
