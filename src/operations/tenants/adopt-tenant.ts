import Type from 'typebox';
import { IssuedKeySchema, issuedKeyView } from '../../auth/api-key-view.js';
import { adoptDatabase } from '../../lifecycle/adopt/adopt-database.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';

export const UnmappedSchema = Type.Object({
  table: Type.String(),
  column: Type.Optional(Type.String()),
  reason: Type.String(),
});

export const adoptTenant = defineOperation({
  name: 'tenants.adopt',
  summary:
    'Bring a single-tenant application’s database in as a new tenant: its tables, as the declared entities map them, copied in one snapshot',
  access: { operator: true },
  input: Type.Object(
    {
      from: Type.String({
        minLength: 1,
        maxLength: 2000,
        description: 'A PostgreSQL URL of the database to adopt',
      }),
      schema: Type.Optional(Type.String({ minLength: 1, maxLength: 63 })),
      tables: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 63 }), { maxItems: 1000 })),
      tenant: Type.String({ minLength: 1, maxLength: 63, description: 'The new tenant’s slug' }),
      isolation: Type.Optional(
        Type.Union([Type.Literal('row'), Type.Literal('schema'), Type.Literal('database')]),
      ),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({
    tenant: TenantViewSchema,
    apiKey: Type.Optional(IssuedKeySchema),
    rows: Type.Integer(),
    tables: Type.Array(Type.Object({ table: Type.String(), entity: Type.String() })),
    unmapped: Type.Array(UnmappedSchema),
    notes: Type.Array(Type.String()),
  }),
  audit: ['tenant.adopt'],
  async run({ from, schema, tables, tenant, isolation }, { engine, context, progress }) {
    const report = await adoptDatabase(
      engine.archives,
      { from, ...(schema ? { schema } : {}), ...(tables ? { tables } : {}) },
      { tenant, ...(isolation ? { isolation } : {}) },
      context,
      (rows) => progress({ done: rows, unit: 'rows' }),
    );
    return {
      tenant: tenantView(report.tenant),
      ...(report.apiKey ? { apiKey: issuedKeyView(report.apiKey) } : {}),
      rows: report.rows,
      tables: report.plan.tables.map((table) => ({ table: table.table, entity: table.entity })),
      unmapped: report.plan.unmapped.map((item) => ({ ...item })),
      notes: [...report.plan.notes],
    };
  },
});
