/**
 * Reindexing a volume: queueing, cancelling (fenced), the job that rebuilds the index in batches,
 * and its progress events. ~285 lines because the job and its cancel protocol share one state
 * machine (queued → running → cancelling → terminal) that is easiest to check read in one place.
 */
import type { Db, Tx } from '../../db/client.js';
import type { Job, Volume } from '../../generated/prisma/client.js';
import type { JobContext, JobHandler } from '../../jobs/types.js';
import { authorizeVolume } from '../access/authorize.js';
import type { Principal } from '../access/principal.js';
import { isRecordNotFound } from '../shared/errors.js';
import type { ReindexProgressEvent, ReindexStatus } from '../shared/events.js';
import { liveEntries } from '../shared/live-entries.js';
import type { VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { refreshVolumeStatus } from '../volumes/status.js';
import { buildHnswIndex, dropHnswIndex, hnswIndexExists, restoreHnswIndexesLater, wantsBulkBuild } from './bulk-index.js';
import { BULK_INSERT_BATCH, indexEntries, recordIndexFailure } from './indexing.js';

// A reindex rebuilds every entry's chunks with the volume's embedding model, as one durable job per
// volume. Its cursor (the last entry id done) and counts are saved after every batch, so a job taken
// over after a crash or restart resumes rather than starting again. Searches keep using the vectors
// of `active_embedder_id` until the new model's are complete; then the volume switches in one update
// and the old vectors are dropped.
//
// Runs of one volume never overlap (the job queue runs one claim per key). Cancelling a running
// reindex is cooperative: the volume shows `cancelling` until the worker has finished the batch of
// entries in hand (REINDEX_BATCH_ENTRIES, indexed together: one embedding call, one swap) and stopped, then `cancelled` (the only final event of that run). A reindex requested while
// one is stopping waits for it, then starts and reuses every vector the cancelled run committed.

export const REINDEX = 'reindex';
/**
 * A batch stops short of REINDEX_BATCH_ENTRIES once its entries' content passes this (sizes as
 * stored; one entry at least), so a batch of large entries holds no more text in memory than this.
 */
export const BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Batches a bulk run (search/bulk-index.ts) keeps in flight: the next one is chunked and embedded
 * while the database writes the one before (a model change of 20,000 chunks: see BENCHMARKS.md).
 */
export const BULK_IN_FLIGHT = 3;
/**
 * A bulk run's batches hold this many times REINDEX_BATCH_ENTRIES (BATCH_BYTES still bounds them):
 * its rows cost the database a fraction of an HNSW insert, so a batch's fixed statements (the next
 * ids, the checkpoints, the progress, the transaction) weighed as much as its rows.
 */
export const BULK_BATCH_FACTOR = 4;
/** A batch stopped because this process is stopping: nothing of it is recorded. */
const ABORTED = Symbol('aborted');
/** Subscribers hear at least this often while a reindex runs. */
export const PROGRESS_INTERVAL_MS = 1000;

interface ReindexPayload {
  target: string;
  cursor: string | null;
  processed: number;
  failed: number;
  total: number;
  /**
   * The dimensions whose HNSW index this run dropped, to build it after loading its rows
   * (search/bulk-index.ts); absent when the run writes through the index.
   */
  bulk?: number;
}

const jobKey = (volumeId: string) => `${REINDEX}:${volumeId}`;

export function progressOf(
  v: Pick<
    Volume,
    'id' | 'reindexStatus' | 'reindexProgress' | 'reindexStartedAt' | 'reindexCompletedAt' | 'reindexError' | 'embeddingModelId'
  >,
): ReindexProgressEvent {
  const p = (v.reindexProgress ?? {}) as Partial<ReindexPayload & { percent: number; embedder_id: string }>;
  return {
    volumeId: v.id,
    status: (v.reindexStatus ?? 'completed') as ReindexStatus,
    embedderId: p.embedder_id ?? v.embeddingModelId,
    total: p.total ?? 0,
    processed: p.processed ?? 0,
    failed: p.failed ?? 0,
    percent: p.percent ?? 0,
    startedAt: v.reindexStartedAt,
    completedAt: v.reindexCompletedAt,
    error: v.reindexError,
  };
}

const percent = (done: number, total: number) => (total === 0 ? 100 : Math.min(100, Math.floor((done / total) * 1000) / 10));
const progressJson = (s: Pick<ReindexPayload, 'target' | 'total' | 'processed' | 'failed'>) => ({
  total: s.total,
  processed: s.processed,
  failed: s.failed,
  percent: percent(s.processed + s.failed, s.total),
  embedder_id: s.target,
});

/** The one event shape of a run, from its state (progressOf is the same from a volume row). */
function reindexEvent(
  volumeId: string,
  status: ReindexStatus,
  state: Pick<ReindexPayload, 'target' | 'total' | 'processed' | 'failed'>,
  at: { startedAt: Date | null; completedAt?: Date | null; error?: string | null },
): ReindexProgressEvent {
  const { embedder_id, ...numbers } = progressJson(state);
  return {
    volumeId,
    status,
    embedderId: embedder_id,
    ...numbers,
    startedAt: at.startedAt,
    completedAt: at.completedAt ?? null,
    error: at.error ?? null,
  };
}

/**
 * Queues a rebuild of the volume's index into its `embedding_model_id` (inside `tx` when given).
 * A reindex already queued or running is left as it is (it picks up a model change itself).
 */
export async function queueReindex(
  rt: Runtime,
  client: Tx | Db,
  volume: Pick<Volume, 'id' | 'embeddingModelId' | 'entryCount'>,
): Promise<void> {
  const existing = await client.job.findUnique({ where: { dedupeKey: jobKey(volume.id) }, select: { status: true } });
  if (existing && (existing.status === 'queued' || existing.status === 'running')) return;
  const start: ReindexPayload = { target: volume.embeddingModelId, cursor: null, processed: 0, failed: 0, total: volume.entryCount };
  await rt.jobs.enqueue(client, { kind: REINDEX, dedupeKey: jobKey(volume.id), volumeId: volume.id, payload: { ...start } });
  // Behind a run that is still stopping, the new one is announced when that one has stopped (onCancelled).
  if (existing?.status === 'cancelling') return;
  const publish = await markQueued(rt, client, volume.id, start);
  publish();
}

/** Records a new run as queued on the volume; returns the publication of its first event (after commit). */
async function markQueued(rt: Runtime, client: Tx | Db, volumeId: string, start: ReindexPayload): Promise<() => void> {
  const startedAt = new Date();
  await client.volume.update({
    where: { id: volumeId },
    data: {
      reindexStatus: 'queued',
      reindexStartedAt: startedAt,
      reindexCompletedAt: null,
      reindexError: null,
      reindexProgress: progressJson(start),
    },
  });
  const event = reindexEvent(volumeId, 'queued', start, { startedAt });
  return () => rt.events.publish('reindexProgress', volumeId, event);
}

/**
 * Starts a full reindex of a volume (REST `POST …/reindex`, GraphQL `startReindex`). Needs
 * `volumes:write`; app keys need an admin mount over the whole volume.
 * @throws NotFoundError, ForbiddenError
 */
export async function startReindex(rt: Runtime, p: Principal, route: VolumeRoute): Promise<ReindexProgressEvent> {
  const { volumeId } = route;
  const volume = await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  await queueReindex(rt, rt.db, volume);
  return progressOf(await rt.db.volume.findUniqueOrThrow({ where: { id: volumeId } }));
}

/**
 * Stops a queued or running reindex. A queued one is `cancelled` at once; a running one is
 * `cancelling` until its worker has finished the entry in hand, then `cancelled`. Searches keep the
 * vectors they were using; a later reindex reuses whatever the cancelled one already embedded.
 * @throws NotFoundError, ForbiddenError
 */
export async function cancelReindex(rt: Runtime, p: Principal, route: VolumeRoute): Promise<ReindexProgressEvent> {
  const { volumeId } = route;
  await authorizeVolume(rt, p, route, { scope: 'volumes:write', admin: true });
  const v = await rt.jobs.cancel(jobKey(volumeId), async (tx, outcome) => {
    if (outcome === 'none') return tx.volume.findUniqueOrThrow({ where: { id: volumeId } });
    const data = outcome === 'cancelled' ? { reindexStatus: 'cancelled', reindexCompletedAt: new Date() } : { reindexStatus: 'cancelling' };
    return tx.volume.update({ where: { id: volumeId }, data });
  });
  const progress = progressOf(v);
  if (progress.status === 'cancelled' || progress.status === 'cancelling') rt.events.publish('reindexProgress', volumeId, progress);
  // A queued run handed back by a stopping process may have dropped an index: it will not build it now.
  if (progress.status === 'cancelled') restoreHnswIndexesLater(rt, REINDEX);
  return progress;
}

/**
 * A volume's reindex state, for anyone who can see the volume (`volumes:read`).
 * @throws NotFoundError, ForbiddenError
 */
export async function reindexProgress(rt: Runtime, p: Principal, route: VolumeRoute): Promise<ReindexProgressEvent> {
  return progressOf(await authorizeVolume(rt, p, route, { scope: 'volumes:read' }));
}

/** The run queued behind a cancelled one: announced once the cancelled one has stopped. */
async function rerunOf(rt: Runtime, tx: Tx, jobId: string, volumeId: string): Promise<() => void> {
  const job = await tx.job.findUniqueOrThrow({ where: { id: jobId }, select: { payload: true } });
  return markQueued(rt, tx, volumeId, job.payload as unknown as ReindexPayload);
}

async function runReindex(rt: Runtime, job: Job, ctx: JobContext): Promise<void> {
  const volumeId = job.volumeId as string;
  let state = job.payload as unknown as ReindexPayload;
  const running = (startedAt: Date) =>
    rt.events.publish('reindexProgress', volumeId, reindexEvent(volumeId, 'running', state, { startedAt }));

  const volume = await rt.db.volume.findUnique({ where: { id: volumeId } });
  if (!volume || volume.deletedAt) {
    if (state.bulk !== undefined) await buildHnswIndex(rt, state.bulk, 'the volume of a bulk reindex is gone');
    return;
  }
  const dropped = state.bulk;
  if (volume.embeddingModelId !== state.target)
    state = { target: volume.embeddingModelId, cursor: null, processed: 0, failed: 0, total: 0 };
  // Entries after the cursor plus those already done: the total only grows with new entries, so percent never jumps back.
  const remaining = await rt.db.entry.count({ where: { ...liveEntries(volumeId), ...(state.cursor ? { id: { gt: state.cursor } } : {}) } });
  state.total = Math.max(state.total, state.processed + state.failed + remaining);
  const planned = await enterBulk(rt, volumeId, state, dropped, ctx);
  if (!planned) return;
  state = planned;
  const startedAt = volume.reindexStartedAt ?? new Date();
  let ticker: NodeJS.Timeout | undefined;
  // The volume as of the last progress saved (each save reads it back: deleted, or its model changed?).
  let now: Pick<Volume, 'embeddingModelId' | 'deletedAt'> | null = volume;
  // Batches being indexed, oldest first: one at a time, or (a bulk run, whose rows cost the
  // database little) BULK_IN_FLIGHT, so one batch's chunking and embedding overlap another's writes.
  const inFlight: { ids: string[]; done: Promise<unknown[] | typeof ABORTED> }[] = [];
  /** Waits for the batches in hand to finish (their rows committed), recording nothing: every exit does, in `finally`. */
  const drain = async () => {
    for (const b of inFlight.splice(0)) await b.done;
  };
  try {
    await rt.db.volume.update({
      where: { id: volumeId },
      data: { reindexStatus: 'running', reindexStartedAt: startedAt, reindexProgress: progressJson(state) },
    });
    running(startedAt);
    ticker = setInterval(() => {
      if (!ctx.signal.aborted) running(startedAt);
    }, PROGRESS_INTERVAL_MS);
    let readFrom = state.cursor; // where the next batch to start begins
    let exhausted = false;
    /** Starts the next batch: 'none' when no entry is left, 'stop' when the job was cancelled (or taken over). */
    const startBatch = async (): Promise<'started' | 'none' | 'stop'> => {
      const batch = await rt.db.entry.findMany({
        where: { ...liveEntries(volumeId), ...(readFrom ? { id: { gt: readFrom } } : {}) },
        select: { id: true, sizeBytes: true },
        orderBy: { id: 'asc' },
        take: rt.settings.reindexBatchEntries * (state.bulk === undefined ? 1 : BULK_BATCH_FACTOR),
      });
      if (batch.length === 0) return 'none';
      // Before each batch: a cancel stops the run within the batches in hand (they are committed).
      if (!(await ctx.checkpoint())) return 'stop';
      await rt.hooks.beforeReindexBatch?.(volumeId, { processed: state.processed, bulk: state.bulk });
      const ids = withinBytes(batch, BATCH_BYTES).map((e) => e.id);
      readFrom = ids.at(-1) as string;
      const options = {
        embedderIds: [state.target],
        force: true,
        signal: ctx.signal,
        // Loading for a build afterwards: past the fresh tier, which only a merge would empty.
        freshTier: state.bulk === undefined,
        ...(state.bulk === undefined ? {} : { rowsPerStatement: BULK_INSERT_BATCH }),
      };
      // Never rejects (a batch in flight may not be awaited for a while): an error fails its entries.
      const done = indexEntries(rt, ids, options).catch((err: unknown) => (ctx.signal.aborted ? ABORTED : ids.map(() => err)));
      inFlight.push({ ids, done });
      return 'started';
    };
    while (!ctx.signal.aborted) {
      if (!now || now.deletedAt) return;
      if (now.embeddingModelId !== state.target) {
        // The model changed while this ran: start over into the new one (the batches still in hand
        // wrote the old target's rows, which go at the switch).
        await drain();
        const total = await rt.db.entry.count({ where: liveEntries(volumeId) });
        const restart = { target: now.embeddingModelId, cursor: null, processed: 0, failed: 0, total };
        const planned = await enterBulk(rt, volumeId, restart, state.bulk, ctx);
        if (!planned) return;
        state = planned;
        readFrom = null;
        exhausted = false;
      }
      while (!exhausted && inFlight.length < (state.bulk === undefined ? 1 : BULK_IN_FLIGHT)) {
        const started = await startBatch();
        if (started === 'stop') return;
        exhausted = started === 'none';
      }
      const batch = inFlight.shift();
      if (!batch) break;
      const outcomes = await batch.done;
      if (outcomes === ABORTED) return;
      const next = { ...state };
      for (const [i, id] of batch.ids.entries()) {
        const outcome = outcomes[i];
        if (outcome instanceof Error) {
          next.failed++;
          await recordIndexFailure(rt, id, outcome);
          rt.log.warn({ err: outcome, volumeId, entryId: id }, 'reindex: entry failed');
        } else next.processed++;
        next.cursor = id;
      }
      next.total = Math.max(next.total, next.processed + next.failed);
      if (!(await ctx.checkpoint({ payload: { ...next }, progress: progressJson(next) }))) return; // cancelled or taken over
      state = next;
      now = await rt.db.volume
        .update({
          where: { id: volumeId },
          data: { reindexProgress: progressJson(state) },
          select: { embeddingModelId: true, deletedAt: true },
        })
        .catch((err: unknown) => (isRecordNotFound(err) ? null : Promise.reject(err)));
      running(startedAt);
    }
    if (ctx.signal.aborted) return;
    await finish(rt, volumeId, state, startedAt, ctx);
  } finally {
    clearInterval(ticker);
    await drain(); // however the run ended, no batch of it writes on after it
    // Stopped short (cancelled, failed, the volume gone): the index goes back now. Not when this
    // process stops: the run resumes and builds it at its end (or start-up does: bulk-index.ts).
    if (state.bulk !== undefined && !ctx.signal.aborted) {
      await buildHnswIndex(rt, state.bulk, 'a bulk reindex stopped').catch((err: unknown) =>
        rt.log.error({ err, dims: state.bulk }, 'building an HNSW index again failed (start-up builds it)'),
      );
    }
  }
}

/**
 * Whether this run loads its rows and builds their HNSW index afterwards (search/bulk-index.ts):
 * decided once per run and model, from the chunks it will write (the entries left, less the rows
 * the target model already has: none to write in a same-model reindex). A run that had dropped an
 * index (`dropped`: resumed after a restart, or restarted into another model) keeps going in bulk
 * into the same dimensions while that index is still missing, and otherwise builds it again first
 * (unless it decides afresh for bulk again). The caller records the decision before dropping the index.
 */
async function planBulk(rt: Runtime, volumeId: string, state: ReindexPayload, dropped: number | undefined): Promise<ReindexPayload> {
  const { bulk: _, ...next } = state;
  const dims = await rt.embedders.get(state.target).then(
    (e) => e.dims,
    () => undefined, // entries fail on their own, and the run without a bulk build
  );
  // Still missing: go on in bulk (built again meanwhile, by another run's end: decide afresh).
  let bulk = dims !== undefined && dims === dropped && !(await hnswIndexExists(rt, dims)) ? dims : undefined;
  if (dims !== undefined && bulk === undefined && rt.settings.soleWriter && rt.settings.reindexBulkMinChunks > 0) {
    const after = state.cursor ? { id: { gt: state.cursor } } : {};
    const left = await rt.db.entry.aggregate({
      where: { ...liveEntries(volumeId), ...after },
      _sum: { totalChunks: true },
      _count: { _all: true },
    });
    const upper = Math.max(left._sum.totalChunks ?? 0, left._count._all);
    if (upper >= rt.settings.reindexBulkMinChunks) {
      const have = await rt.db.chunk.count({
        where: { volumeId, embedderId: state.target, ...(state.cursor ? { entryId: { gt: state.cursor } } : {}) },
      });
      if (await wantsBulkBuild(rt, volumeId, dims, upper - have)) bulk = dims;
    }
  }
  if (dropped !== undefined && dropped !== bulk) await buildHnswIndex(rt, dropped, 'a bulk reindex changed course');
  return bulk === undefined ? next : { ...next, bulk };
}

/**
 * planBulk, then (for a bulk run) the decision recorded in the job and only then the index dropped,
 * so a crash in between leaves a job that builds it at its end. Null when the job was cancelled
 * meanwhile (the index is still there).
 */
async function enterBulk(
  rt: Runtime,
  volumeId: string,
  state: ReindexPayload,
  dropped: number | undefined,
  ctx: JobContext,
): Promise<ReindexPayload | null> {
  const next = await planBulk(rt, volumeId, state, dropped);
  if (next.bulk === undefined) return next;
  if (!(await ctx.checkpoint({ payload: { ...next } }))) {
    await buildHnswIndex(rt, next.bulk, 'a bulk reindex was cancelled');
    return null;
  }
  await dropHnswIndex(rt, next.bulk);
  return next;
}

/** The longest prefix of `entries` whose sizes add up to at most `max` bytes (the first entry whatever its size). */
export function withinBytes<T extends { sizeBytes: bigint }>(entries: T[], max: number): T[] {
  let total = 0n;
  const cap = BigInt(max);
  const n = entries.findIndex((e, i) => {
    total += e.sizeBytes;
    return i > 0 && total > cap;
  });
  return n < 0 ? entries : entries.slice(0, n);
}

/**
 * Switches searches to the new vectors and drops the old ones, in one transaction that also ends the
 * job: a cancel that arrived after the last entry wins instead (nothing switches; `cancelled` is final).
 */
async function finish(rt: Runtime, volumeId: string, state: ReindexPayload, startedAt: Date, ctx: JobContext): Promise<void> {
  const failedAll = state.failed > 0 && state.processed === 0;
  const completedAt = new Date();
  const error = state.failed > 0 ? `${state.failed} of ${state.total} entries could not be indexed (see their index_error)` : null;
  const status: ReindexStatus = failedAll ? 'failed' : 'completed';
  // A bulk run's rows go into their HNSW index before searches switch to them.
  if (state.bulk !== undefined) await buildHnswIndex(rt, state.bulk, 'a bulk reindex loaded its rows');
  const ended = await rt.db.$transaction(async (tx) => {
    if (!(await ctx.complete(tx))) return false;
    await tx.volume.update({
      where: { id: volumeId },
      data: {
        ...(failedAll ? {} : { activeEmbedderId: state.target }),
        reindexStatus: status,
        reindexCompletedAt: completedAt,
        reindexError: error,
        reindexProgress: progressJson(state),
      },
    });
    if (!failedAll) await tx.chunk.deleteMany({ where: { volumeId, embedderId: { not: state.target } } });
    return true;
  });
  if (!ended) return;
  await refreshVolumeStatus(rt, { volumeId }); // degraded after a failed run, active again after a clean one
  rt.events.publish('reindexProgress', volumeId, reindexEvent(volumeId, status, state, { startedAt, completedAt, error }));
}

/** The `reindex` job (registered by createApp). */
export const reindexJob = (rt: Runtime): JobHandler => ({
  run: (job, ctx) => runReindex(rt, job, ctx),
  async onCancelled(tx, job, rerun) {
    const volumeId = job.volumeId as string;
    const v = await tx.volume.update({ where: { id: volumeId }, data: { reindexStatus: 'cancelled', reindexCompletedAt: new Date() } });
    const cancelled = progressOf(v);
    const next = rerun ? await rerunOf(rt, tx, job.id, volumeId) : undefined;
    return () => {
      rt.events.publish('reindexProgress', volumeId, cancelled);
      next?.();
      // Settled without running (its worker died while it stopped): an index it dropped is built here.
      if ((job.payload as Partial<ReindexPayload>).bulk !== undefined) restoreHnswIndexesLater(rt, REINDEX);
    };
  },
  async onFinalFailure(job, error) {
    const v = await rt.db.volume.update({
      where: { id: job.volumeId as string },
      data: { reindexStatus: 'failed', reindexError: error.message.slice(0, 1000), reindexCompletedAt: new Date() },
    });
    await refreshVolumeStatus(rt, { volumeId: v.id });
    rt.events.publish('reindexProgress', v.id, progressOf(v));
  },
});
