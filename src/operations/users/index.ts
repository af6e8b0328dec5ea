import { createUser } from './create-user.js';
import { deleteUser } from './delete-user.js';
import { createAdmin, listAdmins } from './global-admins.js';
import { listUsers } from './list-users.js';
import { resetPassword } from './reset-password.js';
import { showUser } from './show-user.js';
import { updateUser } from './update-user.js';

/** A tenant's users: its admins (users:manage) in their tenant, operators in any. */
export const userOperations = [
  listUsers,
  showUser,
  createUser,
  updateUser,
  deleteUser,
  resetPassword,
] as const;

/** Global admins: users of no tenant, managed by operators only. */
export const adminOperations = [listAdmins, createAdmin] as const;
