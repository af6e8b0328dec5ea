import Type from 'typebox';
import { CreatedUserSchema, createdUserView, UserViewSchema, userView } from '../../auth/user-view.js';
import { defineOperation } from '../operation.js';
import { UserCreateFields } from './user-input.js';

export const listAdmins = defineOperation({
  name: 'admins.list',
  summary: 'List the global admins: users of no tenant who may use the admin routes',
  access: { operator: true },
  input: Type.Object({}, { additionalProperties: false }),
  output: Type.Object({ admins: Type.Array(UserViewSchema) }),
  async run(_input, call) {
    const admins = await call.engine.identity.users.listGlobalAdmins();
    return { admins: admins.map(userView) };
  },
});

export const createAdmin = defineOperation({
  name: 'admins.create',
  summary: 'Create a global admin (without a password: a set-up token, shown once)',
  access: { operator: true },
  input: Type.Object(
    { email: UserCreateFields.email, name: UserCreateFields.name, password: UserCreateFields.password },
    { additionalProperties: false },
  ),
  output: CreatedUserSchema,
  audit: ['user.create_global_admin'],
  run: async (admin, call) =>
    createdUserView(await call.engine.identity.users.createGlobalAdmin(call.context, admin)),
});
