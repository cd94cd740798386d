import type { Tx } from '../db/client.js';
import type { Job, Prisma } from '../generated/prisma/client.js';

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
  /**
   * Runs up to `max` queued jobs of this kind at once (claimed together in one statement, ended
   * together in one). For short jobs whose per-job round trips cost more than their work (indexing
   * small entries). `run` returns one result per job, in order: an Error fails that job alone (it
   * is retried or dead-lettered like any other), anything else succeeds it. Batched jobs get no
   * checkpoints: they must not need cancelling or progress.
   */
  batch?: { max: number; run(jobs: Job[], signal: AbortSignal): Promise<unknown[]> };
  /** Called once when the job has failed for the last time. */
  onFinalFailure?(job: Job, error: Error): Promise<void>;
  /**
   * Called once a cancelled job's worker has stopped, inside the transaction that removes the job;
   * `rerun` says whether a new run of the same key is queued behind it. Returns what to do after
   * commit (e.g. publish the final event).
   */
  onCancelled?(tx: Tx, job: Job, rerun: boolean): Promise<(() => void) | undefined>;
}

export interface EnqueueOptions {
  kind: string;
  /** At most one queued job per key; enqueueing again re-queues it (and resets its attempts). */
  dedupeKey?: string;
  volumeId?: string;
  payload?: Prisma.InputJsonValue;
  maxAttempts?: number;
}

export type CancelOutcome = 'cancelled' | 'cancelling' | 'none';

/** Exponential backoff with jitter: 2 s, 4 s, 8 s … capped at five minutes. */
export function backoffMs(attempt: number): number {
  const base = Math.min(300_000, 1000 * 2 ** attempt);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}
