import { createRole } from './create-role.js';
import { deleteRole } from './delete-role.js';
import { listRoles } from './list-roles.js';
import { showRole } from './show-role.js';
import { updateRole } from './update-role.js';

/** A tenant's roles: its admins (roles:manage) in their tenant, operators in any. */
export const roleOperations = [listRoles, showRole, createRole, updateRole, deleteRole] as const;
