import type { Session } from '../../db/database.js';
import type { Entity } from '../../entities/entity.js';
import { loadVersions, storageVersion } from '../../entities/entity-ledger.js';
import type { EntityVersion } from '../../entities/entity-versions.js';
import { TenantryError } from '../../errors.js';
import { TenantBusyError } from '../../isolation/tenant-locks.js';
import type { ActionContext } from '../../runtime/actor.js';
import { recordAudit } from '../../runtime/audit-log.js';
import { ISOLATION_LEVELS, type IsolationLevel, isBeingBuilt, type Tenant } from '../../tenants/tenant.js';
import { installCapture } from './move-capture.js';
import { type CleanupDeps, dropOtherCopy, tenantAt } from './move-cleanup.js';
import { findMove, type MoveRecord, type Place, placeOf, recordMove, samePlace } from './move-record.js';
import { catchUp, copyBulk, FreezeTooLong, freezeAndFlip, MoveEnds, pendingNotes } from './move-sync.js';

export interface MoveDeps extends CleanupDeps {
  readonly moveSettings: () => { readonly graceSeconds: number; readonly maxFreezeMs: number };
}

export interface MoveRequest {
  readonly to: IsolationLevel;
  /** The server of a `database` target (default: the one with the fewest tenants). */
  readonly server?: string | undefined;
  /** Keep the old copy (sealed) until `finishMove`, whatever the grace period. */
  readonly keepSource?: boolean | undefined;
}

export type MoveStep = 'preparing' | 'copying' | 'catching-up' | 'switching' | 'dropping';

export interface MoveProgress {
  readonly step: MoveStep;
  readonly done: number;
  readonly total?: number;
  readonly unit: string;
}

export interface MoveOptions {
  readonly onProgress?: (progress: MoveProgress) => void;
  /** Asked between steps: true stops the move and rolls it back (before the flip only). */
  readonly cancelled?: () => boolean;
  readonly jobId?: string;
}

export interface MoveReport {
  readonly tenantId: string;
  readonly from: Place;
  readonly to: Place;
  readonly rows: number;
  /** Changed rows applied after the bulk copy, in catch-up rounds and in the freeze. */
  readonly changesApplied: number;
  readonly rounds: number;
  /** How long the tenant's writes were held. */
  readonly freezeMs: number;
  readonly totalMs: number;
  /** Whether the old copy was dropped already (else after the grace period, or `--finish`). */
  readonly sourceDropped: boolean;
}

/** Notes left below which the move freezes writes for its last round. */
const FREEZE_AT_NOTES = 2_000;
const MAX_ROUNDS = 50;
const FREEZE_ATTEMPTS = 3;

export class MoveCancelled extends TenantryError {
  constructor() {
    super('cancelled', 'the move was cancelled: the tenant stays where it was, its partial copy was dropped');
  }
}

function busyAsConflict(tenant: Tenant): (error: unknown) => never {
  return (error) => {
    if (error instanceof TenantBusyError) {
      throw new TenantryError(
        'conflict',
        `tenant "${tenant.slug}" is being moved, migrated or restored right now; try again when it is done`,
      );
    }
    throw error;
  };
}

/**
 * Moves a tenant to another isolation level or server while it serves: the target is built at
 * the tenant's entity version, its writes are noted from then on, its rows copied as of one
 * snapshot and checked, the noted changes applied in rounds, then, in a short write freeze, the
 * last ones applied and checked and the placement flipped (see `freezeAndFlip`). A failure or a
 * cancel before the flip drops the partial copy and leaves the tenant where it was; a rerun after
 * a crash starts over. The old copy stays sealed for `graceSeconds`, or until `finishMove` with
 * `keepSource`. Audited as `tenant.move`.
 */
export async function moveTenant(
  deps: MoveDeps,
  idOrSlug: string,
  request: MoveRequest,
  context: ActionContext,
  options: MoveOptions = {},
): Promise<MoveReport> {
  const started = performance.now();
  const tenant = await deps.store.get(idOrSlug);
  assertMovable(tenant);
  const to = await targetPlace(deps, tenant, request);
  const { ledger, rowVersion, rowEntities } = await readLedger(deps);
  return deps.locks
    .with(
      tenant.id,
      async (session) => {
        const current = await deps.store.findById(tenant.id, session);
        if (!current) throw new TenantryError('tenant_not_found', 'the tenant was purged');
        assertMovable(current);
        const pending = await findMove(session, current.id);
        if (pending?.phase === 'flipped') {
          throw new TenantryError(
            'conflict',
            `the tenant's last move keeps its old copy: drop it first (tenants move ${current.slug} --finish)`,
          );
        }
        if (pending) await dropOtherCopy(deps, session, current, pending, rowEntities);
        if (samePlace(placeOf(current), to)) {
          throw new TenantryError('validation_failed', `the tenant is at ${to.isolation} already`, {
            field: 'to',
          });
        }
        const number = current.isolation === 'row' ? rowVersion : current.schemaVersion;
        const version = ledger.find((entry) => entry.version === number);
        if (!version)
          throw new TenantryError('conflict', `the tenant's entity version (${number}) is not in the ledger`);
        if (to.isolation === 'row' && version.version !== rowVersion) {
          throw new TenantryError(
            'validation_failed',
            `the tenant's tables are at entity version ${version.version} and the shared tables at ${rowVersion}: migrate first`,
            { field: 'to' },
          );
        }
        const record = await recordMove(session, {
          tenantId: current.id,
          jobId: options.jobId ?? null,
          from: placeOf(current),
          to,
          keepSource: request.keepSource === true,
        });
        try {
          return await runMove(deps, session, current, record, version, context, options, started);
        } catch (error) {
          await abandon(deps, session, current, rowEntities);
          await recordAudit(deps.db.owner, context, {
            action: 'tenant.move',
            target: current.slug,
            tenantId: current.id,
            outcome: 'failure',
            details: {
              from: record.from,
              to,
              code: error instanceof TenantryError ? error.code : 'internal',
            },
          }).catch(() => undefined);
          throw error;
        }
      },
      { wait: false },
    )
    .catch(busyAsConflict(tenant));
}

/** After a failure: the partial copy goes, unless the flip happened (then the move succeeded). */
async function abandon(
  deps: MoveDeps,
  session: Session,
  tenant: Tenant,
  rowEntities: readonly Entity[],
): Promise<void> {
  const record = await findMove(session, tenant.id);
  if (record?.phase !== 'copying') return;
  await dropOtherCopy(deps, session, tenant, record, rowEntities);
}

/** The ledger and the row tables' version, read before a tenant lock: its holder must not wait for a second pool connection. */
async function readLedger(deps: MoveDeps) {
  const ledger = await loadVersions(deps.db.owner);
  const rowVersion = await storageVersion(deps.db.owner, 'row');
  const rowEntities = ledger.find((entry) => entry.version === rowVersion)?.entities ?? [];
  return { ledger, rowVersion, rowEntities };
}

function assertMovable(tenant: Tenant): void {
  if (tenant.status === 'deleted' || isBeingBuilt(tenant.status)) {
    throw new TenantryError(
      'conflict',
      `tenant "${tenant.slug}" is ${tenant.status}: only a live tenant moves`,
      {
        field: 'status',
      },
    );
  }
}

async function targetPlace(deps: MoveDeps, tenant: Tenant, request: MoveRequest): Promise<Place> {
  if (!ISOLATION_LEVELS.includes(request.to)) {
    throw new TenantryError('validation_failed', 'to must be row, schema or database', { field: 'to' });
  }
  if (request.to !== 'database' && request.server !== undefined) {
    throw new TenantryError('validation_failed', 'only a database tenant is placed on a server', {
      field: 'server',
    });
  }
  if (request.to === 'database' || tenant.isolation === 'database') {
    if (deps.db.driver !== 'postgres') {
      throw new TenantryError('validation_failed', 'database tenants need PostgreSQL (DATABASE_URL)', {
        field: 'to',
      });
    }
  }
  if (request.to !== 'database') return { isolation: request.to, server: null };
  // The fewest tenants, but never where the tenant is already (a move to another server).
  const server =
    request.server ??
    (await deps.servers.choose(
      deps.db.owner,
      undefined,
      tenant.isolation === 'database' ? tenant.server : null,
    ));
  return { isolation: 'database', server };
}

/**
 * A database target must not exist yet (a rolled-back attempt dropped its own): a database of the
 * tenant's name on the target server means the "other" server is the source's own PostgreSQL
 * under a second name, where provisioning would build into the copy that serves.
 */
async function assertNoDatabase(deps: MoveDeps, session: Session, ends: MoveEnds): Promise<void> {
  const { database, server } = ends.targetPlacement;
  const rows = await deps.servers.onServer(
    server ?? 'main',
    session,
    'SELECT 1 FROM pg_database WHERE datname = $1',
    [database],
  );
  if (rows.length > 0) {
    throw new TenantryError(
      'conflict',
      `server "${server}" holds a database ${database} already: is it the tenant's own server under another name?`,
      { field: 'server' },
    );
  }
}

async function runMove(
  deps: MoveDeps,
  session: Session,
  tenant: Tenant,
  record: MoveRecord,
  version: EntityVersion,
  context: ActionContext,
  options: MoveOptions,
  started: number,
): Promise<MoveReport> {
  const progress = (step: MoveStep, done: number, unit: string, total?: number) =>
    options.onProgress?.({ step, done, unit, ...(total === undefined ? {} : { total }) });
  const checkCancel = () => {
    if (options.cancelled?.()) throw new MoveCancelled();
  };
  const entities = version.entities.filter((entity) => entity.scope === 'tenant');
  const ends = new MoveEnds(deps, tenant, tenantAt(tenant, record.to), entities);
  progress('preparing', 0, 'steps');
  if (record.to.isolation === 'database') await assertNoDatabase(deps, session, ends);
  await deps.provisioner.provision(
    session,
    { id: tenant.id, isolation: record.to.isolation, server: record.to.server },
    version,
  );
  await ends.onSource(async (tx) => {
    await tx.query("SELECT set_config('lock_timeout', '10s', true)");
    await installCapture(tx, ends.sourcePlacement, entities);
  });
  checkCancel();
  let copied = 0;
  const rows = await copyBulk(ends, (_entity, count) => {
    copied += count;
    progress('copying', copied, 'rows');
  });
  let applied = 0;
  let after = 0;
  let rounds = 0;
  const settings = deps.moveSettings();
  for (let attempt = 1; ; attempt += 1) {
    for (; rounds < MAX_ROUNDS; rounds += 1) {
      checkCancel();
      const pending = await pendingNotes(ends, after);
      if (pending <= FREEZE_AT_NOTES) break;
      const round = await catchUp(ends, after);
      after = round.upTo;
      applied += round.notes;
      progress('catching-up', applied, 'changes', applied + pending - round.notes);
    }
    checkCancel();
    progress('switching', applied, 'changes');
    try {
      const outcome = await freezeAndFlip(
        ends,
        record,
        version.version,
        after,
        context,
        settings.maxFreezeMs,
      );
      applied += outcome.applied;
      break;
    } catch (error) {
      if (!(error instanceof FreezeTooLong) || attempt >= FREEZE_ATTEMPTS) throw error;
      rounds = 0;
    }
  }
  const flipped = (await findMove(session, tenant.id))!;
  const freezeMs = Number(flipped.stats.freezeMs ?? 0);
  let sourceDropped = false;
  if (!record.keepSource && settings.graceSeconds === 0) {
    progress('dropping', 0, 'steps');
    const moved = await deps.store.findById(tenant.id, session);
    if (moved) await dropOtherCopy(deps, session, moved, flipped, entities);
    sourceDropped = true;
  }
  return {
    tenantId: tenant.id,
    from: record.from,
    to: record.to,
    rows,
    changesApplied: applied,
    rounds,
    freezeMs,
    totalMs: performance.now() - started,
    sourceDropped,
  };
}

/**
 * Drops the old copy of a tenant's finished move (it was kept with `keepSource`, or its grace
 * period is not over yet). Audited as `tenant.move.finish`.
 */
export async function finishMove(deps: MoveDeps, idOrSlug: string, context: ActionContext): Promise<Place> {
  const tenant = await deps.store.get(idOrSlug, { includeDeleted: true });
  const { rowEntities } = await readLedger(deps);
  return deps.locks
    .with(
      tenant.id,
      async (session) => {
        const record = await findMove(session, tenant.id);
        if (record?.phase !== 'flipped') {
          throw new TenantryError(
            'not_found',
            `tenant "${tenant.slug}" has no finished move whose old copy remains`,
          );
        }
        const current = (await deps.store.findById(tenant.id, session)) ?? tenant;
        await dropOtherCopy(deps, session, current, record, rowEntities);
        await recordAudit(session, context, {
          action: 'tenant.move.finish',
          target: tenant.slug,
          tenantId: tenant.id,
          outcome: 'success',
          details: { dropped: record.from },
        });
        return record.from;
      },
      { wait: false },
    )
    .catch(busyAsConflict(tenant));
}
