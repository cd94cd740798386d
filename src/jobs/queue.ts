import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Db, Tx } from '../db/client.js';
import { modelColumns } from '../db/columns.js';
import { type Job, Prisma } from '../generated/prisma/client.js';
import { inSpan } from '../telemetry/tracing.js';
import { runClaimed, runClaimedBatch } from './run.js';
import type { CancelOutcome, EnqueueOptions, JobHandler } from './types.js';

// A small durable job queue on the `jobs` table: claimed with FOR UPDATE SKIP LOCKED (so each job
// runs on one replica at a time), held by a lease that a heartbeat extends (so a crashed replica's
// jobs are taken over once the lease runs out), retried with exponential backoff, and resumable:
// handlers persist their progress in the row's payload and start from it when a job is taken over.
//
// One row per dedupe key, and one run per row at a time: queuing a key again while its job runs (or
// is being cancelled) records the next run's payload beside it (`rerun_payload`), and that run starts
// only once the current one has stopped. Cancelling a running job marks it `cancelling`; the worker
// sees it at its next checkpoint, stops, and only then is the job removed (or its rerun queued).
//
// One queue per gateway (createApp builds it and registers every handler explicitly).

export interface JobQueueOptions {
  /** Workers claiming jobs at once (0: this process runs none, another replica does). */
  concurrency: number;
  /** How long a claim holds without a heartbeat before another replica may take the job over. */
  leaseMs: number;
  /** How often an idle worker looks for jobs queued elsewhere (jobs queued here wake it at once). */
  pollMs: number;
}

/** The claimed row, returned by the claim itself (no second round trip). */
const JOB_COLUMNS = modelColumns(Object.values(Prisma.JobScalarFieldEnum), 'jobs');

export class JobQueue {
  readonly workerId = `${process.pid}-${randomUUID().slice(0, 8)}`;
  private readonly handlers = new Map<string, JobHandler>();
  private readonly stopping = new AbortController();
  private wakers = new Set<() => void>();
  private workers: Promise<void>[] = [];
  private running = 0;

  constructor(
    private readonly db: Db,
    private readonly log: Logger,
    private readonly opts: JobQueueOptions,
  ) {}

  /** Handles jobs of `kind` (register every kind before `start`). */
  register(kind: string, handler: JobHandler): void {
    this.handlers.set(kind, handler);
  }

  /** Jobs this process's workers are claiming or running right now. */
  get busy(): number {
    return this.running;
  }

  /**
   * Queues a job (inside the caller's transaction when given, so the job exists exactly when the
   * write that needs it commits). A job with the same dedupe key is re-queued rather than duplicated;
   * if it is running or being cancelled, the new payload waits beside it and runs once the current
   * run stops.
   */
  async enqueue(client: Tx | Db, opts: EnqueueOptions): Promise<string> {
    return (await this.enqueueMany(client, [opts]))[0] as string;
  }

  /**
   * Queues several jobs in one statement, each as `enqueue` queues one (a batch write's index jobs).
   * Their dedupe keys must differ (one statement cannot update a row twice). Ids come back in no
   * particular order.
   */
  async enqueueMany(client: Tx | Db, jobs: readonly EnqueueOptions[]): Promise<string[]> {
    if (jobs.length === 0) return [];
    const now = new Date();
    const rows = await client.$queryRaw<{ id: string }[]>`
      INSERT INTO jobs (id, kind, status, dedupe_key, volume_id, payload, max_attempts, run_at, created_at, updated_at)
      SELECT j.id, j.kind, 'queued'::"JobStatus", j.dedupe_key, j.volume_id, j.payload::jsonb, j.max_attempts, ${now}, ${now}, ${now}
      FROM unnest(${jobs.map(() => randomUUID())}::text[], ${jobs.map((j) => j.kind)}::text[], ${jobs.map((j) => j.dedupeKey ?? null)}::text[],
                  ${jobs.map((j) => j.volumeId ?? null)}::text[], ${jobs.map((j) => JSON.stringify(j.payload ?? {}))}::text[],
                  ${jobs.map((j) => j.maxAttempts ?? 5)}::int[]) AS j(id, kind, dedupe_key, volume_id, payload, max_attempts)
      ON CONFLICT (dedupe_key) DO UPDATE SET
        status = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.status ELSE 'queued'::"JobStatus" END,
        rerun_payload = CASE WHEN jobs.status IN ('running', 'cancelling') THEN EXCLUDED.payload ELSE NULL END,
        payload = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.payload ELSE EXCLUDED.payload END,
        run_at = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.run_at ELSE EXCLUDED.run_at END,
        attempts = CASE WHEN jobs.status IN ('running', 'cancelling') THEN jobs.attempts ELSE 0 END,
        last_error = NULL, finished_at = NULL, updated_at = EXCLUDED.updated_at
      RETURNING id`;
    // Inside a transaction the jobs are not visible until commit: wake idle workers once they may be.
    if (client === this.db) this.wake();
    return rows.map((r) => r.id);
  }

  /**
   * Cancels the job with this dedupe key: a queued one is removed at once ('cancelled'); a running
   * one is marked `cancelling` and its worker removes it once it has really stopped ('cancelling'),
   * calling its handler's `onCancelled`. A rerun queued behind it is dropped too. 'none' when there
   * is no job. `record` runs in the same transaction, with the outcome (the worker settles under the
   * same row lock, so it sees what `record` wrote).
   */
  async cancel<T>(dedupeKey: string, record: (tx: Tx, outcome: CancelOutcome) => Promise<T>): Promise<T> {
    return this.db.$transaction(async (tx) => {
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
      return record(tx, outcome);
    });
  }

  /** Wakes this process's idle workers now (after a commit that queued jobs); other replicas poll. */
  wake(): void {
    const wakers = this.wakers;
    this.wakers = new Set();
    for (const w of wakers) w();
  }

  /** Starts the workers. */
  start(): void {
    this.workers = Array.from({ length: this.opts.concurrency }, () => this.work());
  }

  /** Signals handlers to stop, waits for them, and hands their jobs back to the queue. */
  async stop(): Promise<void> {
    this.stopping.abort();
    this.wake();
    await Promise.allSettled(this.workers);
    // Running jobs go back to the queue; jobs being cancelled stay so, for whoever takes them next.
    await this.db.$executeRaw`
      UPDATE jobs SET status = CASE WHEN status = 'cancelling' THEN status ELSE 'queued'::"JobStatus" END,
        locked_by = NULL, locked_until = NULL, run_at = ${new Date()}
      WHERE locked_by = ${this.workerId} AND status IN ('running', 'cancelling')`.catch((err) =>
      this.log.warn({ err }, 'could not release jobs'),
    );
  }

  private idle(): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, this.opts.pollMs);
      const wakers = this.wakers;
      function done() {
        clearTimeout(timer);
        wakers.delete(done);
        resolve();
      }
      wakers.add(done);
    });
  }

  /** Jobs waiting or running, by kind and status, with the age of each group's oldest (for /metrics). */
  async depth(): Promise<{ kind: string; status: string; count: number; oldestSeconds: number }[]> {
    const rows = await this.db.$queryRaw<{ kind: string; status: string; count: number; oldest: number }[]>`
      SELECT kind, status::text AS status, count(*)::int AS count,
        extract(epoch FROM now() - min(created_at))::float8 AS oldest
      FROM jobs WHERE status IN ('queued', 'running', 'cancelling') GROUP BY kind, status`;
    return rows.map((r) => ({ kind: r.kind, status: r.status, count: r.count, oldestSeconds: Math.max(0, r.oldest) }));
  }

  /** Seconds since the oldest unfinished job of `kind` was first queued (0: none). */
  async oldestAge(kind: string): Promise<number> {
    const [row] = await this.db.$queryRaw<{ oldest: number | null }[]>`
      SELECT extract(epoch FROM now() - min(created_at))::float8 AS oldest
      FROM jobs WHERE kind = ${kind} AND status IN ('queued', 'running', 'cancelling')`;
    return Math.max(0, row?.oldest ?? 0);
  }

  private async work(): Promise<void> {
    const signal = this.stopping.signal;
    const claim = {
      db: this.db,
      log: this.log,
      workerId: this.workerId,
      leaseMs: this.opts.leaseMs,
      stopping: signal,
      wake: () => this.wake(),
    };
    while (!signal.aborted) {
      let jobs: Job[] = [];
      this.running++;
      try {
        jobs = await this.claim();
        const handler = jobs[0] && this.handlers.get(jobs[0].kind);
        // A job taken over mid-cancellation only finishes that, on its own.
        for (const job of jobs.filter((j) => j.status !== 'running' || !handler?.batch)) {
          if (handler) await inSpan(`job ${job.kind}`, { 'job.kind': job.kind, 'job.id': job.id }, () => runClaimed(claim, job, handler));
        }
        const batch = jobs.filter((j) => j.status === 'running');
        if (handler?.batch && batch.length > 0) {
          const kind = batch[0]?.kind ?? '';
          await inSpan(`job ${kind}`, { 'job.kind': kind, 'job.batch_size': batch.length }, () => runClaimedBatch(claim, batch, handler));
        }
      } catch (err) {
        if (!signal.aborted) this.log.warn({ err }, 'job worker: could not claim or settle a job');
      } finally {
        this.running--;
      }
      if (jobs.length === 0 && !signal.aborted) await this.idle();
    }
  }

  /**
   * Claims the next job; when its kind runs in batches (JobHandler.batch), queued jobs of the same
   * kind up to the batch size come with it, in the same statement.
   */
  private async claim(): Promise<Job[]> {
    const kinds = [...this.handlers.keys()];
    if (kinds.length === 0) return [];
    const batched = kinds.filter((k) => this.handlers.get(k)?.batch);
    const more = Math.max(0, ...batched.map((k) => (this.handlers.get(k)?.batch?.max ?? 1) - 1));
    const now = new Date();
    // A job being cancelled whose worker died is claimed too, only to finish its cancellation.
    return this.db.$queryRaw<Job[]>`
      WITH first AS (
        SELECT id, kind FROM jobs
        WHERE kind = ANY(${kinds})
          AND ((status = 'queued' AND run_at <= ${now}) OR (status IN ('running', 'cancelling') AND locked_until < ${now}))
        ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED),
      more AS (
        SELECT j.id FROM jobs j
        WHERE j.kind = (SELECT kind FROM first) AND j.kind = ANY(${batched}) AND j.id <> (SELECT id FROM first)
          AND j.status = 'queued' AND j.run_at <= ${now}
        ORDER BY j.run_at, j.id LIMIT ${more} FOR UPDATE SKIP LOCKED)
      UPDATE jobs SET status = CASE WHEN status = 'cancelling' THEN status ELSE 'running'::"JobStatus" END,
        locked_by = ${this.workerId}, locked_until = ${new Date(now.getTime() + this.opts.leaseMs)},
        attempts = attempts + CASE WHEN status = 'cancelling' THEN 0 ELSE 1 END,
        started_at = coalesce(started_at, ${now}), updated_at = ${now}
      WHERE id IN (SELECT id FROM first UNION ALL SELECT id FROM more)
      RETURNING ${JOB_COLUMNS}`;
  }
}
