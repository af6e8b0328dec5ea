import Type from 'typebox';
import { TenantRef } from '../refs.js';

/** Operators name the tenant; a tenant actor's is its own. */
export const InTenant = { tenant: Type.Optional(TenantRef) };

/** A group of the tenant named by its id or its name. */
export const GroupRef = Type.String({ minLength: 1, maxLength: 100, description: 'The group’s id or name' });

const Name = Type.String({ minLength: 1, maxLength: 63 });
const Refs = (description: string) =>
  Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100, description });

/** A group's settings; a new one needs its name. Given roles or members replace the group's. */
export const GroupFields = {
  name: Type.Optional(Name),
  roles: Type.Optional(Refs('Role ids or names; each reaches every member')),
  members: Type.Optional(Refs('User ids')),
};

export const NewGroupFields = { ...GroupFields, name: Name };
