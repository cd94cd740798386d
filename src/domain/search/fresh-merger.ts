import { setTimeout as delay } from 'node:timers/promises';
import type { Runtime } from '../shared/runtime.js';
import { anyFresh, freshRoom, mergeFreshBatch } from './fresh.js';
import { INDEX_ENTRY } from './indexing.js';
import { REINDEX } from './reindex.js';

// The loop that merges the fresh tier (search/fresh.ts) into the HNSW graphs in the background.

/** True while indexing work is queued or running (the merger then leaves the database to it). */
async function indexingBusy(rt: Runtime): Promise<boolean> {
  const [row] = await rt.db.$queryRaw<{ busy: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM jobs WHERE kind = ANY(${[INDEX_ENTRY, REINDEX]}) AND status IN ('queued', 'running')) AS busy`;
  return row?.busy ?? false;
}

/** How often the merger looks again while indexing is busy (wake-ups meanwhile do not hurry it). */
export const BUSY_POLL_MS = 250;

export interface FreshMerger {
  /** Indexing wrote fresh chunks: look again now rather than at the next poll. */
  wake(): void;
  stop(): Promise<void>;
}

/**
 * The background merge loop of one gateway. It merges while there are fresh chunks and indexing is
 * quiet, or regardless once the tier is full; otherwise it waits `pollMs` (or a wake). Safe on
 * several replicas at once. A failed round is logged and retried on the next.
 */
export function startFreshMerger(rt: Runtime, pollMs = 2_000): FreshMerger {
  const stopping = new AbortController();
  let wakeUp = new AbortController();
  const wake = () => wakeUp.abort();
  /** Waits `ms`, or less if stopped or (when `wakeable`) woken. */
  const sleep = async (ms: number, wakeable = true) => {
    const signal = wakeable ? AbortSignal.any([stopping.signal, wakeUp.signal]) : stopping.signal;
    await delay(ms, undefined, { signal }).catch(() => undefined);
    if (wakeUp.signal.aborted) wakeUp = new AbortController();
  };
  const loop = (async () => {
    while (!stopping.signal.aborted) {
      try {
        const room = await freshRoom(rt);
        const hasFresh = rt.settings.freshChunks > 0 ? room < rt.settings.freshChunks : await anyFresh(rt);
        if (!hasFresh) {
          await sleep(pollMs);
          continue;
        }
        // Quiet: merge. Busy: leave the database to indexing unless the tier is full, and look again
        // in a while: indexing wakes the merger after every batch it writes, and answering each wake
        // while indexing goes on cost two statements a batch (a fifth of a reindex's database time).
        if (room > 0 && (await indexingBusy(rt))) {
          await sleep(Math.min(pollMs, BUSY_POLL_MS), false);
          continue;
        }
        for (;;) {
          await rt.hooks.beforeFreshMerge?.();
          if (stopping.signal.aborted) break;
          if ((await mergeFreshBatch(rt)) === 0) break;
          // Between batches, indexing that started meanwhile goes first (unless the tier is full).
          if ((await indexingBusy(rt)) && (await freshRoom(rt)) > 0) break;
        }
        // A merge leaves the fresh row versions dead (BM25 counts them in its corpus statistics
        // until a VACUUM): maintenance vacuums chunks as their dead rows come due (maintenance/vacuum.ts).
      } catch (err) {
        if (stopping.signal.aborted) break;
        rt.log.warn({ err }, 'merging fresh chunks into the HNSW indexes failed; retrying');
        await sleep(pollMs);
      }
    }
  })();
  rt.state.wakeFreshMerger = wake;
  return {
    wake,
    stop: async () => {
      stopping.abort();
      await loop;
      if (rt.state.wakeFreshMerger === wake) rt.state.wakeFreshMerger = undefined;
    },
  };
}
