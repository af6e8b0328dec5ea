import { createGroup } from './create-group.js';
import { deleteGroup } from './delete-group.js';
import { listGroups } from './list-groups.js';
import { showGroup } from './show-group.js';
import { updateGroup } from './update-group.js';

/** A tenant's groups: its admins (groups:manage) in their tenant, operators in any. */
export const groupOperations = [listGroups, showGroup, createGroup, updateGroup, deleteGroup] as const;
