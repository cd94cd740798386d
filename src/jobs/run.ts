import type { Logger } from 'pino';
import type { Db, Tx } from '../db/client.js';
import type { Job } from '../generated/prisma/client.js';
import { backoffMs, type JobContext, type JobHandler } from './types.js';

// Running one claimed job: its heartbeat and checkpoints, its end (deleted, or its rerun queued),
// its cancellation, its failure (retried with backoff, or failed for good). See queue.ts.

export interface Claim {
  db: Db;
  log: Logger;
  workerId: string;
  leaseMs: number;
  /** Aborted when the queue stops. */
  stopping: AbortSignal;
  /** Wakes idle workers (a rerun was queued). */
  wake(): void;
}

/**
 * Ends this worker's claim on a job inside `tx`: a pending rerun is queued in its place, otherwise the
 * row is deleted. Returns the status the claim had ('running' or 'cancelling'), or undefined when the
 * job is no longer this worker's (taken over after a lost lease).
 */
async function endClaim(tx: Tx, job: Job, workerId: string, only?: 'running'): Promise<{ status: string; rerun: boolean } | undefined> {
  const [row] = await tx.$queryRaw<{ status: string; rerun: boolean }[]>`
    SELECT status::text AS status, rerun_payload IS NOT NULL AS rerun FROM jobs
    WHERE id = ${job.id} AND locked_by = ${workerId} AND status IN ('running', 'cancelling') FOR UPDATE`;
  if (!row || (only && row.status !== only)) return undefined;
  if (row.rerun) {
    const now = new Date();
    await tx.$executeRaw`
      UPDATE jobs SET status = 'queued', payload = rerun_payload, rerun_payload = NULL, attempts = 0, last_error = NULL,
        locked_by = NULL, locked_until = NULL, started_at = NULL, run_at = ${now}, updated_at = ${now}
      WHERE id = ${job.id}`;
  } else {
    await tx.$executeRaw`DELETE FROM jobs WHERE id = ${job.id}`;
  }
  return row;
}

/** Ends a claim whose job was cancelled: the handler records it, and the job goes (or its rerun is queued). */
async function settleCancelled(c: Claim, job: Job, handler: JobHandler): Promise<void> {
  let after: (() => void) | undefined;
  const ended = await c.db.$transaction(async (tx) => {
    const row = await endClaim(tx, job, c.workerId);
    if (row?.status !== 'cancelling') return row;
    after = await handler.onCancelled?.(tx, job, row.rerun);
    return row;
  });
  if (ended?.status === 'cancelling') {
    after?.();
    if (ended.rerun) c.wake();
  }
}

/** Runs a claimed job to its end (or hands it back when the queue stops). */
export async function runClaimed(c: Claim, job: Job, handler: JobHandler): Promise<void> {
  const { db, workerId, leaseMs, stopping } = c;
  if (job.status === 'cancelling') {
    // Taken over from a worker that died while stopping: only the cancellation is left to finish.
    await settleCancelled(c, job, handler);
    return;
  }
  const lost = new AbortController();
  const signal = AbortSignal.any([stopping, lost.signal]);
  // Extends the lease while the job is running or being cancelled (so nobody takes over a worker
  // that is finishing its entry in hand). A cancel is not an abort: the handler hears it from the
  // checkpoint and stops at a point of its choosing; losing the claim to another worker aborts.
  const checkpoint: JobContext['checkpoint'] = async (update = {}) => {
    const lease = new Date(Date.now() + leaseMs);
    const payload = update.payload === undefined ? null : JSON.stringify(update.payload);
    const progress = update.progress === undefined ? null : JSON.stringify(update.progress);
    const [row] = await db.$queryRaw<{ status: string }[]>`
      UPDATE jobs SET locked_until = ${lease},
        payload = CASE WHEN status = 'running' AND ${payload}::text IS NOT NULL THEN ${payload}::jsonb ELSE payload END,
        progress = CASE WHEN status = 'running' AND ${progress}::text IS NOT NULL THEN ${progress}::jsonb ELSE progress END
      WHERE id = ${job.id} AND locked_by = ${workerId} AND status IN ('running', 'cancelling')
      RETURNING status::text AS status`;
    if (!row) lost.abort();
    return row?.status === 'running';
  };
  let completed = false;
  const complete: JobContext['complete'] = async (tx) => {
    completed = (await endClaim(tx, job, workerId, 'running')) !== undefined;
    return completed;
  };
  // Keeps the lease alive while the handler works between checkpoints (and notices a cancel).
  const heartbeat = setInterval(() => void checkpoint().catch(() => undefined), Math.max(250, leaseMs / 3));
  try {
    await handler.run(job, { signal, checkpoint, complete });
    if (stopping.aborted) return; // stopped mid-way: the queue hands it back
    if (completed) return;
    await settleSucceeded(c, [job], handler);
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    if (stopping.aborted) return;
    if ((await db.job.count({ where: { id: job.id, lockedBy: workerId, status: 'cancelling' } })) > 0) {
      await settleCancelled(c, job, handler);
      return;
    }
    await recordFailure(c, job, handler, error);
  } finally {
    clearInterval(heartbeat);
  }
}

/** Ends succeeded runs: deleted in one statement, or (a rerun waiting, or cancelled meanwhile) one by one. */
async function settleSucceeded(c: Claim, jobs: Job[], handler: JobHandler): Promise<void> {
  if (jobs.length === 0) return;
  // The common end in one statement: our running claims, no rerun waiting for them.
  const gone = await c.db.$queryRaw<{ id: string }[]>`
    DELETE FROM jobs WHERE id = ANY(${jobs.map((j) => j.id)}) AND locked_by = ${c.workerId} AND status = 'running'
      AND rerun_payload IS NULL RETURNING id`;
  for (const job of jobs) {
    if (gone.some((g) => g.id === job.id)) continue;
    // Otherwise: queue the rerun that waited for it, or settle a cancelled one.
    const row = await c.db.$transaction((tx) => endClaim(tx, job, c.workerId, 'running'));
    if (row?.rerun) c.wake();
    if (!row) await settleCancelled(c, job, handler);
  }
}

/**
 * Runs jobs claimed together through their handler's `batch.run` (see JobHandler.batch): one
 * heartbeat for all, then the succeeded ones end together and each failed one is retried or
 * dead-lettered on its own.
 */
export async function runClaimedBatch(c: Claim, jobs: Job[], handler: JobHandler): Promise<void> {
  const batch = handler.batch as NonNullable<JobHandler['batch']>;
  const ids = jobs.map((j) => j.id);
  const heartbeat = setInterval(
    () =>
      void c.db.$executeRaw`
        UPDATE jobs SET locked_until = ${new Date(Date.now() + c.leaseMs)}
        WHERE id = ANY(${ids}) AND locked_by = ${c.workerId} AND status = 'running'`.catch(() => undefined),
    Math.max(250, c.leaseMs / 3),
  );
  try {
    let results: unknown[];
    try {
      results = await batch.run(jobs, c.stopping);
    } catch (err) {
      if (c.stopping.aborted) return; // stopped mid-way: the queue hands them back
      const error = err instanceof Error ? err : new Error(String(err));
      results = jobs.map(() => error);
    }
    if (c.stopping.aborted) return;
    await settleSucceeded(
      c,
      jobs.filter((_, i) => !(results[i] instanceof Error)),
      handler,
    );
    for (const [i, job] of jobs.entries()) {
      const error = results[i];
      if (error instanceof Error) await recordFailure(c, job, handler, error);
    }
  } finally {
    clearInterval(heartbeat);
  }
}

/** A failed run: retried later with backoff, or failed for good (dead-lettered with its error). */
async function recordFailure(c: Claim, job: Job, handler: JobHandler, error: Error): Promise<void> {
  // Errors that say so (e.g. an input the embedding provider refuses) are final at once.
  const final = job.attempts >= job.maxAttempts || (error as { permanent?: boolean }).permanent === true;
  c.log.warn({ err: error, jobId: job.id, kind: job.kind, attempt: job.attempts, final }, 'job failed');
  const message = error.message.slice(0, 1000);
  const now = new Date();
  // A rerun queued meanwhile runs with fresh attempts; otherwise retry later, or stop for good.
  const [after] = await c.db.$queryRaw<{ status: string }[]>`
    UPDATE jobs SET
      status = CASE WHEN rerun_payload IS NOT NULL OR NOT ${final} THEN 'queued'::"JobStatus" ELSE 'failed'::"JobStatus" END,
      payload = coalesce(rerun_payload, payload), attempts = CASE WHEN rerun_payload IS NOT NULL THEN 0 ELSE attempts END,
      rerun_payload = NULL, last_error = ${message}, locked_by = NULL, locked_until = NULL, updated_at = ${now},
      finished_at = CASE WHEN rerun_payload IS NULL AND ${final} THEN ${now}::timestamp ELSE NULL END,
      run_at = CASE WHEN rerun_payload IS NOT NULL THEN ${now}::timestamp ELSE ${new Date(now.getTime() + backoffMs(job.attempts))}::timestamp END
    WHERE id = ${job.id} AND locked_by = ${c.workerId} AND status = 'running'
    RETURNING status::text AS status`;
  if (after?.status === 'failed') await handler.onFinalFailure?.(job, error).catch((e) => c.log.error({ err: e }, 'onFinalFailure failed'));
}
