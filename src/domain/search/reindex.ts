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
import { indexEntries, recordIndexFailure } from './indexing.js';

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
/** Subscribers hear at least this often while a reindex runs. */
export const PROGRESS_INTERVAL_MS = 1000;

interface ReindexPayload {
  target: string;
  cursor: string | null;
  processed: number;
  failed: number;
  total: number;
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
  if (!volume || volume.deletedAt) return;
  if (volume.embeddingModelId !== state.target)
    state = { target: volume.embeddingModelId, cursor: null, processed: 0, failed: 0, total: 0 };
  // Entries after the cursor plus those already done: the total only grows with new entries, so percent never jumps back.
  const remaining = await rt.db.entry.count({ where: { ...liveEntries(volumeId), ...(state.cursor ? { id: { gt: state.cursor } } : {}) } });
  state.total = Math.max(state.total, state.processed + state.failed + remaining);
  const startedAt = volume.reindexStartedAt ?? new Date();
  await rt.db.volume.update({
    where: { id: volumeId },
    data: { reindexStatus: 'running', reindexStartedAt: startedAt, reindexProgress: progressJson(state) },
  });
  running(startedAt);
  const ticker = setInterval(() => {
    if (!ctx.signal.aborted) running(startedAt);
  }, PROGRESS_INTERVAL_MS);
  // The volume as of the last progress saved (each save reads it back: deleted, or its model changed?).
  let now: Pick<Volume, 'embeddingModelId' | 'deletedAt'> | null = volume;
  try {
    while (!ctx.signal.aborted) {
      if (!now || now.deletedAt) return;
      if (now.embeddingModelId !== state.target) {
        // The model changed while this ran: start over into the new one.
        const total = await rt.db.entry.count({ where: liveEntries(volumeId) });
        state = { target: now.embeddingModelId, cursor: null, processed: 0, failed: 0, total };
      }
      const batch = await rt.db.entry.findMany({
        where: { ...liveEntries(volumeId), ...(state.cursor ? { id: { gt: state.cursor } } : {}) },
        select: { id: true, sizeBytes: true },
        orderBy: { id: 'asc' },
        take: rt.settings.reindexBatchEntries,
      });
      if (batch.length === 0) break;
      // Before each batch: a cancel stops the run within one batch (the one in hand is committed).
      if (!(await ctx.checkpoint())) return;
      const next = { ...state };
      const ids = withinBytes(batch, BATCH_BYTES).map((e) => e.id);
      let outcomes: unknown[];
      try {
        outcomes = await indexEntries(rt, ids, { embedderIds: [state.target], force: true, signal: ctx.signal });
      } catch (err) {
        if (ctx.signal.aborted) return;
        outcomes = ids.map(() => err);
      }
      for (const [i, id] of ids.entries()) {
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
  }
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
