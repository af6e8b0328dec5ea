import { auditOperations } from './audit/index.js';
import { clientOperations } from './clients/index.js';
import { doctorOperations } from './doctor/index.js';
import { groupOperations } from './groups/index.js';
import { exportOperations } from './jobs/export.js';
import { jobOperations } from './jobs/jobs.js';
import { keyOperations } from './keys/index.js';
import { migrationOperations } from './migrations/index.js';
import type { Operation } from './operation.js';
import { roleOperations } from './roles/index.js';
import { serverOperations } from './servers/index.js';
import { tenantOperations } from './tenants/index.js';
import { adminOperations, userOperations } from './users/index.js';

/**
 * Every operation of the engine. The front ends are built from this list: HTTP routes from each
 * operation's `http` routes, the control socket by name, the library's typed calls by noun and
 * verb. A new operation is one file, and one line in its noun's index.
 */
export const catalogue = [
  ...tenantOperations,
  ...keyOperations,
  ...userOperations,
  ...adminOperations,
  ...roleOperations,
  ...groupOperations,
  ...clientOperations,
  ...serverOperations,
  ...migrationOperations,
  ...auditOperations,
  ...jobOperations,
  ...exportOperations,
  ...doctorOperations,
] as const;

export type Catalogue = typeof catalogue;
export type CatalogueOperation = Catalogue[number];

const byName = new Map<string, Operation>(catalogue.map((operation) => [operation.name, operation]));
if (byName.size !== catalogue.length) throw new Error('two operations share a name');

/** The operation of that name, for callers that name it (the control socket). */
export function operationNamed(name: unknown): Operation | undefined {
  return typeof name === 'string' ? byName.get(name) : undefined;
}
