import type { Principal } from '../access/principal.js';
import type { ReindexProgressEvent } from '../shared/events.js';
import type { Runtime } from '../shared/runtime.js';
import { reindexProgress } from './reindex.js';

// The stream behind the `reindexProgress` subscription: authorised before it opens, then the run in
// progress (or the next one) until its final event.

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const done = (e: ReindexProgressEvent) => e.processed + e.failed;
const runOf = (e: ReindexProgressEvent) => (e.startedAt ? new Date(e.startedAt).getTime() : 0);

/**
 * Progress of a volume's reindex. Starts with the current state when a reindex is queued, running or stopping
 * (otherwise waits for the next one), never goes backwards (late duplicates from other replicas
 * are dropped), and ends after the completed, failed or cancelled event.
 * @throws NotFoundError, ForbiddenError — before the stream opens
 */
export async function watchReindex(
  rt: Runtime,
  p: Principal,
  route: { orgId: string; workspaceId: string; volumeId: string },
): Promise<AsyncIterable<ReindexProgressEvent>> {
  await reindexProgress(rt, p, route);
  const source = rt.events.subscribe('reindexProgress', route.volumeId)[Symbol.asyncIterator]();
  // Listen before reading the current state, so nothing published in between is missed.
  let pending = source.next();
  const current = await reindexProgress(rt, p, route);
  async function* stream(): AsyncGenerator<ReindexProgressEvent> {
    try {
      let last: ReindexProgressEvent | undefined;
      if (current.status === 'queued' || current.status === 'running' || current.status === 'cancelling') {
        last = current;
        yield current;
      }
      while (true) {
        const next = await pending;
        if (next.done) return;
        pending = source.next();
        const e = next.value;
        const terminal = TERMINAL.has(e.status);
        if (last && !terminal && runOf(e) === runOf(last) && (done(e) < done(last) || e.total < last.total)) continue;
        // A progress tick that raced the cancel: once cancelling, a run only goes on to cancelled.
        if (last?.status === 'cancelling' && !terminal && runOf(e) === runOf(last)) continue;
        if (!last && terminal && runOf(e) < runOf(current)) continue;
        last = e;
        yield e;
        if (terminal) return;
      }
    } finally {
      await source.return?.();
    }
  }
  return stream();
}
