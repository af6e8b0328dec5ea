import { listAudit } from './list-audit.js';

export const auditOperations = [listAudit] as const;
