import type { ActionContext } from '../../runtime/actor.js';
import type { ScheduledJob } from '../../runtime/scheduler.js';
import { movesToFinish } from './move-record.js';
import { finishMove, type MoveDeps } from './tenant-move.js';

/**
 * The scheduler's entry that drops the old copies of moves whose grace period is over (not those
 * kept with `keepSource`). The due moves are read in the scheduler's transaction; the copies are
 * dropped after it commits, one tenant at a time, each under its tenant's lock.
 */
export function moveFinishing(deps: MoveDeps, onError: (error: unknown) => void): ScheduledJob {
  const context: ActionContext = { actor: { kind: 'system', id: 'scheduler' } };
  return {
    name: 'finish-moves',
    everyMs: 60_000,
    async run(tx) {
      const due = await movesToFinish(tx, deps.moveSettings().graceSeconds);
      return { due: due.map((move) => move.tenantId) };
    },
    afterCommit(result) {
      const due = Array.isArray(result.due) ? (result.due as string[]) : [];
      void (async () => {
        for (const tenantId of due) await finishMove(deps, tenantId, context).catch(onError);
      })();
    },
  };
}
