import type { Queryable } from '../../db/database.js';

/**
 * The tenant's control-plane records an archive holds, one section each, as JSON lines (one
 * object a line, its columns by name; bytea as `\x` hex text, timestamps as PostgreSQL writes
 * them in JSON). Secrets never leave in clear: a password, key or client secret is there only as
 * the hash the control plane keeps. Sessions and pending invitations are left out: a restored
 * tenant starts with none.
 */
export interface ControlPart {
  readonly name: string;
  /** The columns, in the order a line lists them. */
  readonly columns: readonly string[];
  readonly table: string;
  /** The column the records are ordered and paged by (unique within the tenant). */
  readonly key: string;
  /** Whether only `--include-audit` archives it. */
  readonly optional?: boolean;
}

export const CONTROL_PARTS: readonly ControlPart[] = [
  { name: 'hosts', table: 'tenant_hosts', key: 'host', columns: ['host', 'created_at'] },
  {
    name: 'users',
    table: 'users',
    key: 'id',
    columns: ['id', 'email', 'name', 'status', 'password_hash', 'created_at', 'updated_at', 'last_login_at'],
  },
  {
    name: 'roles',
    table: 'roles',
    key: 'id',
    columns: ['id', 'name', 'built_in', 'permissions', 'is_default', 'created_at', 'updated_at'],
  },
  { name: 'groups', table: 'groups', key: 'id', columns: ['id', 'name', 'root', 'created_at', 'updated_at'] },
  { name: 'user-roles', table: 'user_roles', key: 'key', columns: ['user_id', 'role_id'] },
  { name: 'group-members', table: 'group_members', key: 'key', columns: ['group_id', 'user_id'] },
  { name: 'group-roles', table: 'group_roles', key: 'key', columns: ['group_id', 'role_id'] },
  {
    name: 'api-keys',
    table: 'api_keys',
    key: 'id',
    columns: [
      'id',
      'key_id',
      'name',
      'permissions',
      'created_by',
      'salt',
      'hash',
      'iterations',
      'created_at',
      'last_used_at',
      'expires_at',
      'revoked_at',
    ],
  },
  {
    name: 'clients',
    table: 'clients',
    key: 'id',
    columns: [
      'id',
      'client_id',
      'name',
      'created_by',
      'inventory',
      'salt',
      'hash',
      'iterations',
      'created_at',
      'revoked_at',
    ],
  },
  {
    name: 'audit',
    table: 'audit_log',
    key: 'id',
    columns: ['id', 'at', 'actor', 'action', 'target', 'outcome', 'client_address', 'details'],
    optional: true,
  },
];

const PAGE_ROWS = 1_000;

/** A part's records of one tenant, a line each, read in pages in the caller's transaction. */
export async function* controlPartLines(
  tx: Queryable,
  part: ControlPart,
  tenantId: string,
): AsyncIterable<string> {
  const object = `json_build_object(${part.columns.map((column) => `'${column}', t.${column}`).join(', ')})`;
  // Membership tables have a composite key: they are paged by its text form.
  const composite = part.key === 'key';
  const key = composite
    ? part.columns.map((column) => `t.${column}::text`).join(` || ':' || `)
    : `t.${part.key}`;
  const keyType = composite || part.key === 'host' ? 'text' : part.table === 'audit_log' ? 'bigint' : 'uuid';
  let after: string | null = null;
  for (;;) {
    const page: { rows: { line: string; key: string }[] } = await tx.query<{ line: string; key: string }>(
      `SELECT ${object}::text AS line, (${key})::text AS key FROM tenantry.${part.table} t
        WHERE t.tenant_id = $1 AND ($2::${keyType} IS NULL OR (${key}) > $2::${keyType})
        ORDER BY ${key} LIMIT ${PAGE_ROWS}`,
      [tenantId, after],
    );
    for (const row of page.rows) yield `${row.line}\n`;
    if (page.rows.length < PAGE_ROWS) return;
    after = page.rows.at(-1)!.key;
  }
}
