import Type, { type Static } from 'typebox';
import type { GroupView } from './group-directory.js';

const Id = Type.String({ format: 'uuid' });

/** A tenant group as every front end shows it: the tenant routes, the CLI's `--json`, OpenAPI, the library. */
export const GroupViewSchema = Type.Object({
  id: Id,
  name: Type.String(),
  root: Type.Boolean({
    description: 'The tenant’s root group ("everyone"): every user is in it; it cannot be deleted',
  }),
  roles: Type.Array(Type.Object({ id: Id, name: Type.String() })),
  members: Type.Array(Type.Object({ id: Id, email: Type.String() })),
  createdAt: Type.String({ format: 'date-time' }),
});
export type GroupJson = Static<typeof GroupViewSchema>;

export function groupView(group: GroupView): GroupJson {
  return {
    id: group.id,
    name: group.name,
    root: group.root,
    roles: group.roles.map((role) => ({ id: role.id, name: role.name })),
    members: group.members.map((member) => ({ id: member.id, email: member.email })),
    createdAt: group.createdAt.toISOString(),
  };
}
