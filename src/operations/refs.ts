import Type from 'typebox';

/** A tenant named by its id or its slug. */
export const TenantRef = Type.String({
  minLength: 1,
  maxLength: 100,
  description: 'The tenant’s id or slug',
});

/** The path parameter admin routes name a tenant by, as an operation's `tenant` member. */
export const BY_TENANT = { idOrSlug: 'tenant' } as const;

/** `?flag=true`: listing options sent in a query string. */
export const Flag = Type.Boolean();
