import { adoptTenant } from './adopt-tenant.js';
import { backupTenant, restoreTenantOperation } from './backup-tenant.js';
import { replaceTenant, updateTenant } from './change-tenant.js';
import { createTenant } from './create-tenant.js';
import { deleteTenant } from './delete-tenant.js';
import { listTenants } from './list-tenants.js';
import { finishMoveOperation, moveTenantOperation, startMove } from './move-tenant.js';
import { repairTenant } from './repair-tenant.js';
import { showTenant } from './show-tenant.js';
import { changeTenantConfig, showTenantConfig } from './tenant-config.js';
import { addHost, removeHost } from './tenant-hosts.js';
import { activateTenant, deactivateTenant } from './tenant-status.js';
import { tenantUsage } from './tenant-usage.js';

/** Tenants, their configuration and their hosts: operators only. */
export const tenantOperations = [
  createTenant,
  listTenants,
  showTenant,
  updateTenant,
  replaceTenant,
  activateTenant,
  deactivateTenant,
  deleteTenant,
  repairTenant,
  backupTenant,
  restoreTenantOperation,
  adoptTenant,
  moveTenantOperation,
  startMove,
  finishMoveOperation,
  tenantUsage,
  showTenantConfig,
  changeTenantConfig,
  addHost,
  removeHost,
] as const;
