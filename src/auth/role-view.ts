import Type, { type Static } from 'typebox';
import type { RoleView } from './role-directory.js';

const DateTime = Type.String({ format: 'date-time' });

/** A tenant role as every front end shows it: the tenant routes, the CLI's `--json`, OpenAPI, the library. */
export const RoleViewSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  name: Type.String(),
  builtIn: Type.Boolean(),
  default: Type.Boolean({ description: 'Given to every new user of the tenant' }),
  permissions: Type.Array(Type.String(), {
    description: 'What the role grants today (a built-in role follows the declared entities)',
  }),
  createdAt: DateTime,
  updatedAt: DateTime,
});
export type RoleJson = Static<typeof RoleViewSchema>;

export function roleView(role: RoleView): RoleJson {
  return {
    id: role.id,
    name: role.name,
    builtIn: role.builtIn,
    default: role.default,
    permissions: [...role.permissions],
    createdAt: role.createdAt.toISOString(),
    updatedAt: role.updatedAt.toISOString(),
  };
}
