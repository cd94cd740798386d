import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Lock, type Locker, MemoryLocker, type RequestRelease } from '@tus/server';
import { LockedError } from '../shared/errors.js';
import type { Runtime } from '../shared/runtime.js';

// One request at a time per tus upload, across every replica on the database. tus-node-server takes
// a lock around each request on an upload (PATCH, HEAD, DELETE) and its MemoryLocker holds it in
// one process only: behind two replicas, two PATCHes of one upload could both pass the offset check
// and write into the same bytes. Here the lock is a lease row (upload_locks): taken by an insert
// that only succeeds where no live lease exists, renewed by its holder, gone when released or, if
// the holder died, when the lease runs out. tus's rule that a newer request makes the holder let
// go (a client resuming after a timeout must not wait for its own stale PATCH) holds across
// replicas too: a waiter marks the row, and the holder's renewal sees the mark and stops its
// request. The embedded gateway is one process and keeps tus's MemoryLocker.

export interface UploadLockTimings {
  /** How long a lease lasts unless renewed (a dead holder's lock frees after this). */
  leaseMs: number;
  /** How often a holder renews its lease and looks for a release request. */
  renewMs: number;
  /** How often a waiter tries again. */
  retryMs: number;
  /** Longest a request waits for the lock before tus answers it with its lock timeout. */
  acquireTimeoutMs: number;
}

export const UPLOAD_LOCK_TIMINGS: UploadLockTimings = { leaseMs: 15_000, renewMs: 500, retryMs: 100, acquireTimeoutMs: 30_000 };

/**
 * What tus answers a request that waited acquireTimeoutMs for the lock: 423 Locked, which tus
 * clients retry (tus's own ERR_LOCK_TIMEOUT is a 500).
 */
export const UPLOAD_BUSY = { status_code: 423, body: 'This upload is busy with another request; retry it\n' };

/** A tus Locker: in the process when this gateway is the database's only one (embedded), else over the database (above). */
export function uploadLocker(rt: Runtime, timings: UploadLockTimings = UPLOAD_LOCK_TIMINGS): Locker {
  if (rt.settings.soleWriter) return new MemoryLocker();
  return { newLock: (id: string) => new UploadLock(rt, id, timings) };
}

const lockers = new WeakMap<Runtime, Locker>();

/** The gateway's one tus Locker, shared by every bucket's tus server and by termination (the in-process one must be one). */
export function gatewayUploadLocker(rt: Runtime): Locker {
  let locker = lockers.get(rt);
  if (!locker) {
    locker = uploadLocker(rt);
    lockers.set(rt, locker);
  }
  return locker;
}

/**
 * Runs `fn` holding an upload's lock, as tus holds it around its own requests. Termination takes it
 * so that a PATCH still running on any replica lets go (the newer request wins) before the bytes it
 * writes into are removed. A wait past the lock's timeout is a LockedError (409 `LOCKED` over REST,
 * which tus clients retry); a holder that asks this one to let go waits for `fn`, which is short.
 * @throws LockedError
 */
export async function holdingUploadLock<T>(
  locker: Locker,
  upload: { id: string; storageId: string },
  signal: AbortSignal | undefined,
  fn: () => Promise<T>,
): Promise<T> {
  // tus locks an upload by its store id.
  const lock = locker.newLock(upload.storageId);
  try {
    await lock.lock(signal ?? new AbortController().signal, () => undefined);
  } catch {
    throw new LockedError('This upload is busy with another request; retry it', { upload_id: upload.id, field: 'upload_id' });
  }
  try {
    return await fn();
  } finally {
    await lock.unlock();
  }
}

/**
 * Removes the leases of holders that died (a crashed request's row otherwise stays until its upload
 * is next locked), a lease's length after they ran out: a live holder renews long before. Runs in
 * the maintenance sweep; returns how many.
 */
export async function sweepUploadLocks(rt: Runtime, timings: UploadLockTimings = UPLOAD_LOCK_TIMINGS): Promise<number> {
  return rt.db.$executeRaw`DELETE FROM upload_locks WHERE expires_at < now() - ${timings.leaseMs} * interval '1 millisecond'`;
}

class UploadLock implements Lock {
  private readonly holder = randomUUID();
  private renewing: AbortController | undefined;

  constructor(
    private readonly rt: Runtime,
    private readonly id: string,
    private readonly t: UploadLockTimings,
  ) {}

  async lock(stop: AbortSignal, requestRelease: RequestRelease): Promise<void> {
    const deadline = Date.now() + this.t.acquireTimeoutMs;
    let asked = false;
    for (;;) {
      if (await this.take()) {
        this.keep(requestRelease);
        return;
      }
      // Held elsewhere: ask its holder to let go (once), then wait for the row to free.
      if (!asked) {
        await this.rt.db.$executeRaw`UPDATE upload_locks SET release_requested = true WHERE upload_id = ${this.id}`;
        asked = true;
      }
      if (stop.aborted || Date.now() >= deadline) throw UPLOAD_BUSY;
      await sleep(this.t.retryMs, undefined, { signal: stop }).catch(() => undefined);
    }
  }

  async unlock(): Promise<void> {
    this.renewing?.abort();
    this.renewing = undefined;
    await this.rt.db.$executeRaw`DELETE FROM upload_locks WHERE upload_id = ${this.id} AND holder = ${this.holder}`;
  }

  /** Inserts this holder's lease, or takes over one that has run out; true when it holds the lock. */
  private async take(): Promise<boolean> {
    const rows = await this.rt.db.$queryRaw<{ holder: string }[]>`
      INSERT INTO upload_locks (upload_id, holder, expires_at, release_requested)
      VALUES (${this.id}, ${this.holder}, now() + ${this.t.leaseMs} * interval '1 millisecond', false)
      ON CONFLICT (upload_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at, release_requested = false
        WHERE upload_locks.expires_at < now()
      RETURNING holder`;
    return rows.length === 1;
  }

  /**
   * Renews the lease until unlock. A release request from a waiter, or a lease found lost (this
   * process stalled past it and another took over), stops the holder's request: tus then ends it
   * and unlocks.
   */
  private keep(requestRelease: RequestRelease): void {
    const renewing = new AbortController();
    this.renewing = renewing;
    void (async () => {
      while (!renewing.signal.aborted) {
        await sleep(this.t.renewMs, undefined, { signal: renewing.signal }).catch(() => undefined);
        if (renewing.signal.aborted) return;
        const rows = await this.rt.db.$queryRaw<{ release_requested: boolean }[]>`
          UPDATE upload_locks SET expires_at = now() + ${this.t.leaseMs} * interval '1 millisecond'
          WHERE upload_id = ${this.id} AND holder = ${this.holder} RETURNING release_requested`.catch((err: unknown) => {
          this.rt.log.warn({ err, uploadId: this.id }, 'could not renew an upload lock (retried)');
          return undefined;
        });
        if (rows === undefined || renewing.signal.aborted) continue;
        if (rows.length === 0 || rows[0]?.release_requested) {
          await requestRelease();
          return;
        }
      }
    })();
  }
}
