import type { Principal } from '../access/principal.js';
import type { ReindexProgressEvent } from '../shared/events.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { watchUntilTerminal } from '../shared/watch.js';
import { reindexProgress } from './reindex.js';

// The stream behind the `reindexProgress` subscription: authorised before it opens, then the run in
// progress (or the next one) until its final event.

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const isTerminal = (e: ReindexProgressEvent) => TERMINAL.has(e.status);
const done = (e: ReindexProgressEvent) => e.processed + e.failed;
const runOf = (e: ReindexProgressEvent) => (e.startedAt ? new Date(e.startedAt).getTime() : 0);

/** Drops what would make a run look like it went backwards: late ticks from other replicas, ticks after a cancel. */
function accept(e: ReindexProgressEvent, last: ReindexProgressEvent | undefined, current: ReindexProgressEvent): boolean {
  const sameRun = last !== undefined && runOf(e) === runOf(last);
  if (sameRun && !isTerminal(e) && (done(e) < done(last) || e.total < last.total)) return false;
  // A progress tick that raced the cancel: once cancelling, a run only goes on to cancelled.
  if (sameRun && last.status === 'cancelling' && !isTerminal(e)) return false;
  // The end of a run older than the one seen at the start.
  if (!last && isTerminal(e) && runOf(e) < runOf(current)) return false;
  return true;
}

/**
 * Progress of a volume's reindex. Starts with the current state when a reindex is queued, running or stopping
 * (otherwise waits for the next one), never goes backwards (late duplicates from other replicas
 * are dropped), and ends after the completed, failed or cancelled event.
 * @throws NotFoundError, ForbiddenError — before the stream opens
 */
export function watchReindex(rt: Runtime, p: Principal, route: VolumeRoute): Promise<AsyncIterable<ReindexProgressEvent>> {
  return watchUntilTerminal(rt, 'reindexProgress', route.volumeId, {
    current: () => reindexProgress(rt, p, route),
    showCurrent: (current) => !isTerminal(current),
    isTerminal,
    accept,
  });
}
