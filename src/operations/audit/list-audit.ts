import Type from 'typebox';
import { parseInstant } from '../../calendar.js';
import { listAudit as list } from '../../runtime/audit-log.js';
import { AuditEntrySchema, auditEntryView, withoutOtherTenants } from '../../runtime/audit-view.js';
import { defineOperation } from '../operation.js';

const Instant = Type.String({ maxLength: 40, description: 'ISO 8601 date-time' });

/**
 * Operators read every tenant's trail (or one tenant's, `tenant`); a tenant actor with
 * `audit:read` reads its own tenant's entries only. Another tenant named in an entry a tenant
 * reads (a cross-tenant attempt with its key) is not shown by id.
 */
export const listAudit = defineOperation({
  name: 'audit.list',
  summary: 'Audit entries, newest first, a page at a time',
  access: { operator: true, tenant: 'audit:read' },
  input: Type.Object(
    {
      tenant: Type.Optional(
        Type.String({ maxLength: 100, description: 'id or slug (a deleted tenant too)' }),
      ),
      action: Type.Optional(Type.String({ maxLength: 100, description: 'an action or its prefix (tenant)' })),
      actor: Type.Optional(Type.String({ maxLength: 200, description: 'cli:alice, api-key:<key id>, ...' })),
      since: Type.Optional(Instant),
      until: Type.Optional(Instant),
      before: Type.Optional(
        Type.String({ maxLength: 20, description: 'The `next` cursor of the previous page' }),
      ),
      limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Default 100' })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({
    entries: Type.Array(AuditEntrySchema),
    next: Type.Union([Type.String(), Type.Null()]),
  }),
  http: [
    {
      method: 'GET',
      path: '/admin/audit',
      scope: 'admin',
      query: ['tenant', 'action', 'actor', 'since', 'until', 'before', 'limit'],
    },
    {
      method: 'GET',
      path: '/api/v1/audit',
      scope: 'tenant',
      summary: 'This tenant’s audit entries, newest first (audit:read)',
      query: ['action', 'actor', 'since', 'until', 'before', 'limit'],
    },
  ],
  async run({ tenant, since, until, ...filter }, call) {
    const tenantId =
      tenant === undefined && call.operator
        ? undefined
        : (await call.tenant(tenant, { includeDeleted: true })).id;
    const page = await list(call.engine.db.owner, {
      ...filter,
      tenantId,
      since: since === undefined ? undefined : parseInstant(since, 'since'),
      until: until === undefined ? undefined : parseInstant(until, 'until'),
    });
    const entries = page.entries.map(auditEntryView);
    return {
      entries: call.operator ? entries : entries.map((entry) => withoutOtherTenants(entry, tenantId!)),
      next: page.next,
    };
  },
});
