import Type from 'typebox';
import { parseInstant } from '../../calendar.js';
import { listAudit as list } from '../../runtime/audit-log.js';
import { AuditEntrySchema, auditEntryView } from '../../runtime/audit-view.js';
import { defineOperation } from '../operation.js';

const Instant = Type.String({ maxLength: 40, description: 'ISO 8601 date-time' });

export const listAudit = defineOperation({
  name: 'audit.list',
  summary: 'Audit entries, newest first, a page at a time',
  access: { operator: true },
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
  ],
  async run({ tenant, since, until, ...filter }, call) {
    const tenantId =
      tenant === undefined ? undefined : (await call.tenant(tenant, { includeDeleted: true })).id;
    const page = await list(call.engine.db.owner, {
      ...filter,
      tenantId,
      since: since === undefined ? undefined : parseInstant(since, 'since'),
      until: until === undefined ? undefined : parseInstant(until, 'until'),
    });
    return { entries: page.entries.map(auditEntryView), next: page.next };
  },
});
