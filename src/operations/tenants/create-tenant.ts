import Type from 'typebox';
import { IssuedKeySchema, issuedKeyView } from '../../auth/api-key-view.js';
import { normaliseEmail } from '../../auth/user-email.js';
import { CreatedUserSchema, createdUserView } from '../../auth/user-view.js';
import { TenantryError } from '../../errors.js';
import { createTenant as create } from '../../lifecycle/tenant-creation.js';
import { CreateTenantInputSchema } from '../../tenants/tenant-input.js';
import { TenantViewSchema, tenantView } from '../../tenants/tenant-view.js';
import { defineOperation } from '../operation.js';

/**
 * Creates a tenant and its first API key (shown once) and, with `adminEmail`, its first
 * administrator: a user with the tenant-admin role and a one-time set-up token (shown once). The
 * email is checked first, so a taken one refuses the whole creation.
 */
export const createTenant = defineOperation({
  name: 'tenants.create',
  summary: 'Create a tenant and its first API key (with adminEmail, its first administrator too)',
  access: { operator: true },
  input: Type.Object(
    {
      ...CreateTenantInputSchema.properties,
      adminEmail: Type.Optional(Type.String({ minLength: 3, maxLength: 254 })),
    },
    { additionalProperties: false },
  ),
  output: Type.Object({
    tenant: TenantViewSchema,
    apiKey: IssuedKeySchema,
    admin: Type.Optional(CreatedUserSchema),
  }),
  audit: ['tenant.create', 'user.create'],
  http: [
    {
      method: 'POST',
      path: '/admin/tenants',
      scope: 'admin',
      status: 201,
      location: (output: { tenant: { id: string } }) => `/admin/tenants/${output.tenant.id}`,
    },
  ],
  async run({ adminEmail, ...input }, { engine, context }) {
    const email = adminEmail === undefined ? undefined : normaliseEmail(adminEmail, 'adminEmail');
    if (email !== undefined && (await engine.identity.users.emailTaken(email))) {
      throw new TenantryError('conflict', 'an account with this email exists already', {
        field: 'adminEmail',
      });
    }
    const created = await create(engine.lifecycle, input, context);
    const result = { tenant: tenantView(created.tenant), apiKey: issuedKeyView(created.apiKey) };
    if (email === undefined) return result;
    const admin = await engine.identity.users.create(engine.identity.operator(created.tenant.id, context), {
      email,
      roles: ['tenant-admin'],
    });
    return { ...result, admin: createdUserView(admin) };
  },
});
