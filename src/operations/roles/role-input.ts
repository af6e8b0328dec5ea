import Type from 'typebox';
import { TenantRef } from '../refs.js';

/** Operators name the tenant; a tenant actor's is its own. */
export const InTenant = { tenant: Type.Optional(TenantRef) };

/** A role of the tenant named by its id or its name. */
export const RoleRef = Type.String({ minLength: 1, maxLength: 100, description: 'The role’s id or name' });

const Name = Type.String({ minLength: 1, maxLength: 63 });

/** A role's own settings; a new one needs its name. */
export const RoleFields = {
  name: Type.Optional(Name),
  permissions: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 200 }), {
      maxItems: 1000,
      description: 'Tenant permissions; only those the caller holds may be added',
    }),
  ),
  default: Type.Optional(Type.Boolean({ description: 'Given to every new user of the tenant' })),
};

export const NewRoleFields = { ...RoleFields, name: Name };
