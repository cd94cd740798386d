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

/** Least time between the merger's VACUUMs of chunks. */
const VACUUM_EVERY_MS = 30_000;
/** Share of the chunks table merged since the last VACUUM that is worth one. */
const VACUUM_SHARE = 0.05;

/** Whether `merged` dead row versions are VACUUM_SHARE of the chunks table (planner estimate; none yet: yes). */
async function worthVacuuming(rt: Runtime, merged: number): Promise<boolean> {
  const [t] = await rt.db.$queryRaw<
    { rows: number }[]
  >`SELECT greatest(reltuples, 0)::float8 AS rows FROM pg_class WHERE relname = 'chunks'`;
  return merged >= VACUUM_SHARE * (t?.rows ?? 0);
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
  let mergedSinceVacuum = 0;
  let lastVacuum = Number.NEGATIVE_INFINITY;
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
        let drained = false;
        for (;;) {
          await rt.hooks.beforeFreshMerge?.();
          if (stopping.signal.aborted) break;
          const merged = await mergeFreshBatch(rt);
          mergedSinceVacuum += merged;
          if (merged === 0) {
            drained = true;
            break;
          }
          // Between batches, indexing that started meanwhile goes first (unless the tier is full).
          if ((await indexingBusy(rt)) && (await freshRoom(rt)) > 0) break;
        }
        // A merge leaves the fresh row versions dead; BM25 (pg_textsearch) counts dead rows in its
        // corpus statistics until a VACUUM, and PGlite runs no autovacuum. A VACUUM holds PGlite's one
        // connection ~1 s at 50k chunks (measured), so it runs after a drained tier only once the
        // merged rows are VACUUM_SHARE of the table (the drift they cause is about that share), at
        // most every VACUUM_EVERY_MS; the hourly maintenance VACUUM takes what is left.
        if (
          drained &&
          mergedSinceVacuum > 0 &&
          Date.now() - lastVacuum >= VACUUM_EVERY_MS &&
          (await worthVacuuming(rt, mergedSinceVacuum))
        ) {
          await rt.db.$executeRawUnsafe('VACUUM (ANALYZE) chunks');
          lastVacuum = Date.now();
          mergedSinceVacuum = 0;
        }
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
