import { randomUUID } from 'node:crypto';
import { db, type Tx } from '../db/client.js';
import type { Job, Prisma } from '../generated/prisma/client.js';
import { logger } from '../logger.js';

// A small durable job queue on the `jobs` table: claimed with FOR UPDATE SKIP LOCKED (so each job
// runs on one replica at a time), held by a lease that a heartbeat extends (so a crashed replica's
// jobs are taken over once the lease runs out), retried with exponential backoff, and resumable:
// handlers persist their progress in the row's payload and start from it when a job is taken over.

/** What a handler gets besides the job: a way to keep the claim and save progress, and a stop signal. */
export interface JobContext {
  /** Aborted when this process stops; handlers save progress and return. */
  signal: AbortSignal;
  /**
   * Extends the lease and, when given, stores `payload`/`progress`. Returns false when the job is no
   * longer this worker's (cancelled, re-queued or taken over): the handler must stop.
   */
  checkpoint(update?: { payload?: Prisma.InputJsonValue; progress?: Prisma.InputJsonValue }): Promise<boolean>;
}

export interface JobHandler {
  run(job: Job, ctx: JobContext): Promise<void>;
  /** Called once when the job has failed for the last time. */
  onFinalFailure?(job: Job, error: Error): Promise<void>;
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
 * running, its worker's completion will not delete it, so it runs once more with the newer state.
 */
export async function enqueueJob(client: Tx | typeof db, opts: EnqueueOptions): Promise<string> {
  const now = new Date();
  const payload = JSON.stringify(opts.payload ?? {});
  const [row] = await client.$queryRaw<{ id: string }[]>`
    INSERT INTO jobs (id, kind, status, dedupe_key, volume_id, payload, max_attempts, run_at, created_at, updated_at)
    VALUES (${randomUUID()}, ${opts.kind}, 'queued', ${opts.dedupeKey ?? null}, ${opts.volumeId ?? null},
            ${payload}::jsonb, ${opts.maxAttempts ?? 5}, ${now}, ${now}, ${now})
    ON CONFLICT (dedupe_key) DO UPDATE SET status = 'queued', run_at = EXCLUDED.run_at, attempts = 0,
      last_error = NULL, payload = EXCLUDED.payload, finished_at = NULL, updated_at = EXCLUDED.updated_at
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

export interface JobRunner {
  readonly workerId: string;
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

  const loop = async () => {
    while (!abort.signal.aborted) {
      let job: Job | undefined;
      try {
        job = await claim(workerId, opts.leaseMs);
      } catch (err) {
        if (!abort.signal.aborted) logger.warn({ err }, 'could not claim a job');
      }
      if (!job) {
        await idle();
        continue;
      }
      await execute(job, workerId, opts.leaseMs, abort.signal);
    }
  };
  const workers = opts.concurrency > 0 ? Array.from({ length: opts.concurrency }, loop) : [];

  return {
    workerId,
    poke,
    stop: async () => {
      abort.abort();
      listeners.delete(poke);
      for (let i = 0; i < opts.concurrency; i++) poke();
      await Promise.allSettled(workers);
      await db.$executeRaw`
        UPDATE jobs SET status = 'queued', locked_by = NULL, locked_until = NULL, run_at = ${new Date()}
        WHERE locked_by = ${workerId} AND status = 'running'`.catch((err) => logger.warn({ err }, 'could not release jobs'));
    },
  };
}

async function claim(workerId: string, leaseMs: number): Promise<Job | undefined> {
  const kinds = [...handlers.keys()];
  if (kinds.length === 0) return undefined;
  const now = new Date();
  const rows = await db.$queryRaw<{ id: string }[]>`
    UPDATE jobs SET status = 'running', locked_by = ${workerId}, locked_until = ${new Date(now.getTime() + leaseMs)},
      attempts = attempts + 1, started_at = coalesce(started_at, ${now}), updated_at = ${now}
    WHERE id = (
      SELECT id FROM jobs
      WHERE kind = ANY(${kinds}) AND ((status = 'queued' AND run_at <= ${now}) OR (status = 'running' AND locked_until < ${now}))
      ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id`;
  const id = rows[0]?.id;
  return id ? ((await db.job.findUnique({ where: { id } })) ?? undefined) : undefined;
}

async function execute(job: Job, workerId: string, leaseMs: number, signal: AbortSignal): Promise<void> {
  const handler = handlers.get(job.kind);
  if (!handler) return;
  const checkpoint: JobContext['checkpoint'] = async (update = {}) => {
    const set: Prisma.JobUpdateManyMutationInput = { lockedUntil: new Date(Date.now() + leaseMs) };
    if (update.payload !== undefined) set.payload = update.payload;
    if (update.progress !== undefined) set.progress = update.progress;
    const { count } = await db.job.updateMany({ where: { id: job.id, lockedBy: workerId, status: 'running' }, data: set });
    return count === 1;
  };
  // Keeps the lease alive while the handler works between checkpoints.
  const heartbeat = setInterval(() => void checkpoint().catch(() => undefined), Math.max(250, leaseMs / 3));
  try {
    await handler.run(job, { signal, checkpoint });
    if (signal.aborted) return; // stopped mid-way: stop() hands it back to the queue
    // Deleting only our running claim: a job re-queued meanwhile stays queued and runs again.
    await db.job.deleteMany({ where: { id: job.id, lockedBy: workerId, status: 'running' } });
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    if (signal.aborted) return;
    // Errors that say so (e.g. an input the embedding provider refuses) are final at once.
    const final = job.attempts >= job.maxAttempts || (error as { permanent?: boolean }).permanent === true;
    logger.warn({ err: error, jobId: job.id, kind: job.kind, attempt: job.attempts, final }, 'job failed');
    const { count } = await db.job.updateMany({
      where: { id: job.id, lockedBy: workerId, status: 'running' },
      data: final
        ? { status: 'failed', lastError: error.message.slice(0, 1000), finishedAt: new Date(), lockedBy: null, lockedUntil: null }
        : {
            status: 'queued',
            lastError: error.message.slice(0, 1000),
            runAt: new Date(Date.now() + backoffMs(job.attempts)),
            lockedBy: null,
            lockedUntil: null,
          },
    });
    if (final && count === 1) await handler.onFinalFailure?.(job, error).catch((e) => logger.error({ err: e }, 'onFinalFailure failed'));
  } finally {
    clearInterval(heartbeat);
  }
}
