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
  const sleep = async (ms: number) => {
    const signal = AbortSignal.any([stopping.signal, wakeUp.signal]);
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
        // Quiet: merge. Busy: leave the database to indexing unless the tier is full.
        if (room > 0 && (await indexingBusy(rt))) {
          await sleep(Math.min(pollMs, 250));
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
