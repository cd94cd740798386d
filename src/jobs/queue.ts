import { randomUUID } from 'node:crypto';
import { db, type Tx } from '../db/client.js';
import type { Job, Prisma } from '../generated/prisma/client.js';
import { logger } from '../logger.js';

// A small durable job queue on the `jobs` table: claimed with FOR UPDATE SKIP LOCKED (so each job
// runs on one replica at a time), held by a lease that a heartbeat extends (so a crashed replica's
// jobs are taken over once the lease runs out), retried with exponential backoff, and resumable:
// handlers persist their progress in the row's payload and start from it when a job is taken over.
//
// One row per dedupe key, and one run per row at a time: queuing a key again while its job runs (or
// is being cancelled) records the next run's payload beside it (`rerun_payload`), and that run starts
// only once the current one has stopped. Cancelling a running job marks it `cancelling`; the worker
// sees it at its next checkpoint, stops, and only then is the job removed (or its rerun queued).

/** What a handler gets besides the job: a way to keep the claim and save progress, and a stop signal. */
export interface JobContext {
  /**
   * Aborted when this process stops or the job stops being this worker's (taken over after a lost
   * lease, as a checkpoint or the heartbeat finds); handlers save progress and return. A cancel does
   * not abort: the checkpoint reports it, and the handler stops once its work in hand is committed.
   */
  signal: AbortSignal;
  /**
   * Extends the lease and, when given, stores `payload`/`progress`. Returns false when the job is no
   * longer this worker's to run (being cancelled, or taken over): the handler must stop.
   */
  checkpoint(update?: { payload?: Prisma.InputJsonValue; progress?: Prisma.InputJsonValue }): Promise<boolean>;
  /**
   * Ends the job inside the handler's own final transaction, so its last write and the job's end
   * commit together (a cancel cannot slip in between). Returns false when the job is no longer this
   * worker's running claim: the handler must roll back and return.
   */
  complete(tx: Tx): Promise<boolean>;
}

export interface JobHandler {
  run(job: Job, ctx: JobContext): Promise<void>;
  /** Called once when the job has failed for the last time. */
  onFinalFailure?(job: Job, error: Error): Promise<void>;
  /**
   * Called once a cancelled job's worker has stopped, inside the transaction that removes the job;
   * `rerun` says whether a new run of the same key is queued behind it. Returns what to do after
   * commit (e.g. publish the final event).
   */
  onCancelled?(tx: Tx, job: Job, rerun: boolean): Promise<(() => void) | undefined>;
}

const handlers = new Map<string, JobHandler>();

export function registerJobHandler(kind: string, handler: JobHandler): void {
  handlers.set(kind, handler);
}

export interface EnqueueOptions {
  kind: string;
  /** At most one queued job per key; enqueueing again re-queues it (and resets its attempts). */
  dedupeKey?: string;
  volumeId?: string;
  payload?: Prisma.InputJsonValue;
  maxAttempts?: number;
}

const listeners = new Set<() => void>();

/**
 * Queues a job (inside the caller's transaction when given, so the job exists exactly when the write
 * that needs it commits). A job with the same dedupe key is re-queued rather than duplicated; if it is
 * running or being cancelled, the new payload waits beside it and runs once the current run stops.
 */
export async function enqueueJob(client: Tx | typeof db, opts: EnqueueOptions): Promise<string> {
  const now = new Date();
  const payload = JSON.stringify(opts.payload ?? {});
  const [row] = await client.$queryRaw<{ id: string }[]>`
    INSERT INTO jobs (id, kind, status, dedupe_key, volume_id, payload, max_attempts, run_at, created_at, updated_at)
    VALUES (${randomUUID()}, ${opts.kind}, 'queued', ${opts.dedupeKey ?? null}, ${opts.volumeId ?? null},
            ${payload}::jsonb, ${opts.maxAttempts ?? 5}, ${now}, ${now}, ${now})
    ON CONFLICT (dedupe_key) DO UPDATE SET
      status = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.status ELSE 'queued'::"JobStatus" END,
      rerun_payload = CASE WHEN jobs.status IN ('running', 'cancelling') THEN EXCLUDED.payload ELSE NULL END,
      payload = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.payload ELSE EXCLUDED.payload END,
      run_at = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.run_at ELSE EXCLUDED.run_at END,
      attempts = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.attempts ELSE 0 END,
      last_error = NULL, finished_at = NULL, updated_at = EXCLUDED.updated_at
    RETURNING id`;
  // Inside a transaction the job is not visible until commit: wake idle workers once it may be.
  if (client === db) wakeWorkers();
  return (row as { id: string }).id;
}

/** Wakes this process's idle workers (after a commit that queued jobs); others poll. */
export function wakeWorkers(): void {
  for (const wake of listeners) wake();
}

/** Exponential backoff with jitter: 2 s, 4 s, 8 s … capped at five minutes. */
export function backoffMs(attempt: number): number {
  const base = Math.min(300_000, 1000 * 2 ** attempt);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

export interface JobRunnerOptions {
  concurrency: number;
  leaseMs: number;
  pollMs: number;
}

export type CancelOutcome = 'cancelled' | 'cancelling' | 'none';

/**
 * Cancels the job with this dedupe key: a queued one is removed at once ('cancelled'); a running one
 * is marked `cancelling` and its worker removes it once it has really stopped ('cancelling'), calling
 * its handler's `onCancelled`. A rerun queued behind it is dropped too. 'none' when there is no job.
 * `record` runs in the same transaction, with the outcome.
 */
export async function cancelJob<T>(dedupeKey: string, record: (tx: Tx, outcome: CancelOutcome) => Promise<T>): Promise<T> {
  return db.$transaction(async (tx) => {
    const [job] = await tx.$queryRaw<{ id: string; status: string }[]>`
      SELECT id, status::text AS status FROM jobs WHERE dedupe_key = ${dedupeKey} FOR UPDATE`;
    let outcome: CancelOutcome = 'none';
    if (job?.status === 'queued') {
      await tx.$executeRaw`DELETE FROM jobs WHERE id = ${job.id}`;
      outcome = 'cancelled';
    } else if (job?.status === 'running' || job?.status === 'cancelling') {
      await tx.$executeRaw`UPDATE jobs SET status = 'cancelling', rerun_payload = NULL, updated_at = ${new Date()} WHERE id = ${job.id}`;
      outcome = 'cancelling';
    }
    // In the same transaction, so the worker (which settles under the same row lock) sees the record.
    return record(tx, outcome);
  });
}

export interface JobRunner {
  readonly workerId: string;
  /** Jobs this runner is executing right now. */
  readonly busy: number;
  /** Wakes idle workers now (e.g. after queuing from this process). */
  poke(): void;
  /** Signals handlers to stop, waits for them, and hands their jobs back to the queue. */
  stop(): Promise<void>;
}

/** Starts `concurrency` workers claiming jobs of the registered kinds. */
export function startJobRunner(opts: JobRunnerOptions): JobRunner {
  const workerId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  const abort = new AbortController();
  let wake: (() => void) | undefined;
  const poke = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  listeners.add(poke);

  const idle = () =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, opts.pollMs);
      const prev = wake;
      wake = () => {
        clearTimeout(timer);
        prev?.();
        resolve();
      };
    });

  let busy = 0;
  const loop = async () => {
    while (!abort.signal.aborted) {
      let job: Job | undefined;
      busy++;
      try {
        job = await claim(workerId, opts.leaseMs);
        if (job) await execute(job, workerId, opts.leaseMs, abort.signal);
      } catch (err) {
        if (!abort.signal.aborted) logger.warn({ err }, 'job worker: could not claim or settle a job');
      } finally {
        busy--;
      }
      if (!job) await idle();
    }
  };
  const workers = opts.concurrency > 0 ? Array.from({ length: opts.concurrency }, loop) : [];

  return {
    workerId,
    get busy() {
      return busy;
    },
    poke,
    stop: async () => {
      abort.abort();
      listeners.delete(poke);
      for (let i = 0; i < opts.concurrency; i++) poke();
      await Promise.allSettled(workers);
      // Running jobs go back to the queue; jobs being cancelled stay so, for whoever takes them next.
      await db.$executeRaw`
        UPDATE jobs SET status = CASE WHEN status = 'cancelling' THEN status ELSE 'queued'::"JobStatus" END,
          locked_by = NULL, locked_until = NULL, run_at = ${new Date()}
        WHERE locked_by = ${workerId} AND status IN ('running', 'cancelling')`.catch((err) =>
        logger.warn({ err }, 'could not release jobs'),
      );
    },
  };
}

async function claim(workerId: string, leaseMs: number): Promise<Job | undefined> {
  const kinds = [...handlers.keys()];
  if (kinds.length === 0) return undefined;
  const now = new Date();
  // A job being cancelled whose worker died is claimed too, only to finish its cancellation.
  const rows = await db.$queryRaw<{ id: string }[]>`
    UPDATE jobs SET status = CASE WHEN status = 'cancelling' THEN status ELSE 'running'::"JobStatus" END,
      locked_by = ${workerId}, locked_until = ${new Date(now.getTime() + leaseMs)},
      attempts = attempts + CASE WHEN status = 'cancelling' THEN 0 ELSE 1 END,
      started_at = coalesce(started_at, ${now}), updated_at = ${now}
    WHERE id = (
      SELECT id FROM jobs
      WHERE kind = ANY(${kinds})
        AND ((status = 'queued' AND run_at <= ${now}) OR (status IN ('running', 'cancelling') AND locked_until < ${now}))
      ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id`;
  const id = rows[0]?.id;
  return id ? ((await db.job.findUnique({ where: { id } })) ?? undefined) : undefined;
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
async function settleCancelled(job: Job, workerId: string, handler: JobHandler): Promise<void> {
  let after: (() => void) | undefined;
  const ended = await db.$transaction(async (tx) => {
    const row = await endClaim(tx, job, workerId);
    if (row?.status !== 'cancelling') return row;
    after = await handler.onCancelled?.(tx, job, row.rerun);
    return row;
  });
  if (ended?.status === 'cancelling') {
    after?.();
    if (ended.rerun) wakeWorkers();
  }
}

async function execute(job: Job, workerId: string, leaseMs: number, stopping: AbortSignal): Promise<void> {
  const handler = handlers.get(job.kind);
  if (!handler) return;
  if (job.status === 'cancelling') {
    // Taken over from a worker that died while stopping: only the cancellation is left to finish.
    await settleCancelled(job, workerId, handler);
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
    if (stopping.aborted) return; // stopped mid-way: stop() hands it back to the queue
    if (completed) return;
    // Deleting only our running claim (or queuing the rerun that waited for it); a cancelled one is settled.
    const row = await db.$transaction((tx) => endClaim(tx, job, workerId, 'running'));
    if (row?.rerun) wakeWorkers();
    if (!row) await settleCancelled(job, workerId, handler);
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    if (stopping.aborted) return;
    if (await isCancelling(job.id, workerId)) {
      await settleCancelled(job, workerId, handler);
      return;
    }
    // Errors that say so (e.g. an input the embedding provider refuses) are final at once.
    const final = job.attempts >= job.maxAttempts || (error as { permanent?: boolean }).permanent === true;
    logger.warn({ err: error, jobId: job.id, kind: job.kind, attempt: job.attempts, final }, 'job failed');
    const message = error.message.slice(0, 1000);
    const now = new Date();
    // A rerun queued meanwhile runs with fresh attempts; otherwise retry later, or stop for good.
    const [after] = await db.$queryRaw<{ status: string }[]>`
      UPDATE jobs SET
        status = CASE WHEN rerun_payload IS NOT NULL OR NOT ${final} THEN 'queued'::"JobStatus" ELSE 'failed'::"JobStatus" END,
        payload = coalesce(rerun_payload, payload), attempts = CASE WHEN rerun_payload IS NOT NULL THEN 0 ELSE attempts END,
        rerun_payload = NULL, last_error = ${message}, locked_by = NULL, locked_until = NULL, updated_at = ${now},
        finished_at = CASE WHEN rerun_payload IS NULL AND ${final} THEN ${now}::timestamp ELSE NULL END,
        run_at = CASE WHEN rerun_payload IS NOT NULL THEN ${now}::timestamp ELSE ${new Date(now.getTime() + backoffMs(job.attempts))}::timestamp END
      WHERE id = ${job.id} AND locked_by = ${workerId} AND status = 'running'
      RETURNING status::text AS status`;
    if (after?.status === 'failed')
      await handler.onFinalFailure?.(job, error).catch((e) => logger.error({ err: e }, 'onFinalFailure failed'));
  } finally {
    clearInterval(heartbeat);
  }
}

async function isCancelling(jobId: string, workerId: string): Promise<boolean> {
  const n = await db.job.count({ where: { id: jobId, lockedBy: workerId, status: 'cancelling' } });
  return n > 0;
}
