import type { Queryable, Transaction } from '../../db/database.js';
import type { Entity } from '../../entities/entity.js';
import { TenantryError } from '../../errors.js';
import { placementOf, type TenantPlacement } from '../../isolation/tenant-placement.js';
import type { ActionContext } from '../../runtime/actor.js';
import { recordAudit } from '../../runtime/audit-log.js';
import type { Change } from '../../runtime/change-bus.js';
import type { Tenant } from '../../tenants/tenant.js';
import { changedKeys, fenceWrites, lastChange, seal, unseal } from './move-capture.js';
import type { CleanupDeps } from './move-cleanup.js';
import {
  applyChanges,
  assertSameSums,
  canonical,
  copyAll,
  type MoveSide,
  tableSums,
  verifyKeys,
} from './move-copy.js';
import { flipPlacement, type MoveRecord } from './move-record.js';

/** Notes applied per catch-up round. */
const CATCH_UP_BATCH = 5_000;
/** Seconds a seal made before a flip that commits elsewhere lasts, should the flip never come. */
const BOUNDED_SEAL_SECONDS = 60;

/** Both ends of a move and how to open a transaction on them. */
export class MoveEnds {
  readonly source: Tenant;
  readonly target: Tenant;
  readonly sourcePlacement: TenantPlacement;
  readonly targetPlacement: TenantPlacement;
  /** Both in the control plane's database (row and schema tenants): one transaction serves both. */
  readonly sameDatabase: boolean;

  constructor(
    readonly deps: CleanupDeps,
    source: Tenant,
    target: Tenant,
    readonly entities: readonly Entity[],
  ) {
    this.source = source;
    this.target = target;
    this.sourcePlacement = placementOf(source);
    this.targetPlacement = placementOf(target);
    this.sameDatabase =
      this.sourcePlacement.database === undefined && this.targetPlacement.database === undefined;
  }

  /** The source's transaction, as the owner under the tenant's row security. */
  onSource<T>(fn: (tx: Transaction) => Promise<T>, snapshot?: boolean | 'writable'): Promise<T> {
    return this.deps.data.bulkTransaction(this.source, fn, {
      owner: true,
      ...(snapshot ? { snapshot } : {}),
    });
  }

  /** Runs `fn` with a side on each end: one transaction when both are in one database. */
  both<T>(
    fn: (source: MoveSide, target: MoveSide) => Promise<T>,
    snapshot?: boolean | 'writable',
  ): Promise<T> {
    if (this.sameDatabase) {
      return this.onSource(
        (tx) => fn({ tx, placement: this.sourcePlacement }, { tx, placement: this.targetPlacement }),
        snapshot === undefined ? undefined : 'writable',
      );
    }
    return this.onSource(
      (stx) =>
        this.deps.data.bulkTransaction(
          this.target,
          (ttx) =>
            fn({ tx: stx, placement: this.sourcePlacement }, { tx: ttx, placement: this.targetPlacement }),
          { owner: true },
        ),
      snapshot,
    );
  }
}

/**
 * The bulk copy: every row of the tenant as of one snapshot of the source, then the sums of both
 * sides compared before the target commits. Writes go on meanwhile (they are being noted).
 */
export async function copyBulk(
  ends: MoveEnds,
  onTable: (entity: string, rows: number) => void,
): Promise<number> {
  return ends.both(async (source, target) => {
    await canonical(source.tx);
    if (!ends.sameDatabase) await canonical(target.tx);
    const rows = await copyAll(source, target, ends.entities, ends.sameDatabase, onTable);
    assertSameSums(await tableSums(source, ends.entities), await tableSums(target, ends.entities));
    return rows;
  }, true);
}

/** One catch-up round, as of one snapshot of the source; returns the last note applied and the notes. */
export async function catchUp(ends: MoveEnds, after: number): Promise<{ upTo: number; notes: number }> {
  return ends.both(async (source, target) => {
    const keys = await changedKeys(source.tx, ends.source.id, after, CATCH_UP_BATCH);
    if (keys.notes > 0) await applyChanges(source, target, ends.entities, keys, ends.sameDatabase);
    return { upTo: keys.upTo, notes: keys.notes };
  }, true);
}

export async function pendingNotes(ends: MoveEnds, after: number): Promise<number> {
  return (await ends.onSource((tx) => lastChange(tx, ends.source.id))) - after;
}

/** The final catch-up took longer than the freeze may: rolled back, the writes went on. */
export class FreezeTooLong extends TenantryError {
  constructor(maxFreezeMs: number) {
    super('unavailable', `the final catch-up took longer than the ${maxFreezeMs} ms a write freeze may last`);
  }
}

export interface FlipOutcome {
  readonly freezeMs: number;
  readonly applied: number;
  readonly verifiedKeys: number;
}

/**
 * The write freeze and the flip. Holding the tenant's write fence (writes wait, reads go on), the
 * last notes are applied, every row changed since the copy began is compared on both sides, the
 * source is sealed and the control plane names the target, in that order:
 * - a source in the control plane's database is sealed and flipped in one transaction;
 * - a source elsewhere is sealed for a minute first, then flipped, then sealed for good: a move
 *   that dies between the two leaves it writable again when the minute is out, never both copies
 *   writable at once, never a flip onto a copy that misses a write.
 * The freeze is bounded by `maxFreezeMs` (statement and lock timeouts): past it, everything rolls
 * back and the writes go on at the source.
 */
export async function freezeAndFlip(
  ends: MoveEnds,
  record: MoveRecord,
  version: number,
  after: number,
  context: ActionContext,
  maxFreezeMs: number,
): Promise<FlipOutcome> {
  const tenantId = ends.source.id;
  const flipInSource = ends.sourcePlacement.database === undefined;
  let frozenAt = 0;
  let applied = 0;
  let verifiedKeys = 0;
  const changes: Change[] = [{ kind: 'tenant', tenantId }];
  const flip = async (tx: Queryable) => {
    const stats = { freezeMs: Math.round(performance.now() - frozenAt), applied };
    if (!(await flipPlacement(tx, record, version, stats))) {
      throw new TenantryError('conflict', 'the tenant changed place while it was being moved');
    }
    for (const change of changes) await ends.deps.bus.announce(tx, change);
    await recordAudit(tx, context, {
      action: 'tenant.move',
      target: ends.source.slug,
      tenantId,
      outcome: 'success',
      details: { from: record.from, to: record.to, ...stats },
    });
  };
  await ends.onSource(async (stx) => {
    const budget = `${maxFreezeMs}ms`;
    await stx.query(
      "SELECT set_config('lock_timeout', $1, true), set_config('statement_timeout', $1, true)",
      [budget],
    );
    await fenceWrites(stx, tenantId);
    frozenAt = performance.now();
    const finalRound = async (source: MoveSide, target: MoveSide) => {
      await canonical(source.tx);
      if (!ends.sameDatabase) await canonical(target.tx);
      for (let from = after; ; ) {
        const keys = await changedKeys(source.tx, tenantId, from, CATCH_UP_BATCH);
        if (keys.notes === 0) break;
        applied += await applyChanges(source, target, ends.entities, keys, ends.sameDatabase);
        from = keys.upTo;
      }
      const all = await changedKeys(source.tx, tenantId, 0, Number.MAX_SAFE_INTEGER);
      verifiedKeys = [...all.byEntity.values()].reduce((sum, ids) => sum + ids.length, 0);
      await verifyKeys(source, target, ends.entities, all.byEntity);
    };
    if (ends.sameDatabase) {
      await finalRound(
        { tx: stx, placement: ends.sourcePlacement },
        { tx: stx, placement: ends.targetPlacement },
      );
    } else {
      await ends.deps.data.bulkTransaction(
        ends.target,
        async (ttx) => {
          await ttx.query("SELECT set_config('statement_timeout', $1, true)", [budget]);
          await finalRound(
            { tx: stx, placement: ends.sourcePlacement },
            { tx: ttx, placement: ends.targetPlacement },
          );
        },
        { owner: true },
      );
    }
    if (performance.now() - frozenAt > maxFreezeMs) throw new FreezeTooLong(maxFreezeMs);
    if (flipInSource) {
      await seal(stx, tenantId);
      await flip(stx);
    } else {
      await seal(stx, tenantId, BOUNDED_SEAL_SECONDS);
    }
  });
  if (!flipInSource) {
    try {
      await ends.deps.db.owner.transaction((tx) => flip(tx));
    } catch (error) {
      await ends.onSource((tx) => unseal(tx, tenantId)).catch(() => undefined);
      throw error;
    }
    await ends.onSource((tx) => seal(tx, tenantId));
  }
  const freezeMs = performance.now() - frozenAt;
  for (const change of changes) ends.deps.bus.applied(change);
  return { freezeMs, applied, verifiedKeys };
}
