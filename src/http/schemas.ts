import Type from 'typebox';

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.String(),
    field: Type.Optional(Type.String()),
    requestId: Type.Optional(Type.String()),
  },
  { $id: 'Problem' },
);

export const problemResponses = {
  400: ProblemSchema,
  401: ProblemSchema,
  403: ProblemSchema,
  404: ProblemSchema,
  409: ProblemSchema,
} as const;

type Security = Record<string, string[]>[];

/**
 * What each kind of route accepts, for OpenAPI (the schemes are in openapi.ts). Every route
 * declares one: a reader of the document sees what each needs, and a test checks none is missing.
 */
export const Security = {
  /** The admin token, or a global admin's session token. */
  admin: [{ adminToken: [] }, { sessionBearer: [] }] as Security,
  /** A tenant's API key, or a user's session (bearer or cookie). */
  tenant: [{ apiKey: [] }, { sessionBearer: [] }, { sessionCookie: [] }] as Security,
  /** A user's session only. */
  session: [{ sessionBearer: [] }, { sessionCookie: [] }] as Security,
  /** A machine client's connection token. */
  client: [{ clientToken: [] }] as Security,
  /** Nothing: the route is public (or checks what it is sent itself, like a login). */
  none: [] as Security,
};
