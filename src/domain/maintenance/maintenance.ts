/**
 * Housekeeping: the periodic timer and each step it runs (expired entries, bucket retries, volume
 * retention, statuses, usage reconciliation, abandoned uploads). ~280 lines of independent steps,
 * each short, kept beside the timer that orders them.
 */
import type { ObjectInfo, SweepResult } from '../../storage/blob-store.js';
import { authorizeOrg } from '../access/authorize.js';
import type { Principal } from '../access/principal.js';
import { afterPurge, purgeExpired } from '../entries/commit.js';
import { keysInFlight, removeStrayUploads, sweepExpiredUploads, unfinishedUploads } from '../entries/resumable.js';
import { sweepUploadLocks } from '../entries/upload-locks.js';
import { sweepLocks } from '../locks/locks.js';
import { NotFoundError } from '../shared/errors.js';
import { isId } from '../shared/fields.js';
import type { WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { excludeVolumeWriters } from '../shared/volume-gate.js';
import { purgeDeletedVolumes } from '../volumes/lifecycle.js';
import { refreshVolumeStatuses } from '../volumes/status.js';
import { volumeObjectPrefix } from '../volumes/volumes.js';
import { vacuumAll, vacuumWhereDue } from './vacuum.js';

/** UPLOAD_TEMP_MAX_AGE_MS: upload temporaries older than this are abandoned (see configureMaintenance). */
/**
 * The periodic housekeeping of one gateway: expired entries, bucket deletions left to retry,
 * deleted volumes past retention, volume statuses, vacuuming where Postgres does not (vacuum.ts),
 * and (less often) usage counters and objects.
 * Every step is safe to run on several replicas at once (row locks), and a failing step is logged
 * and retried on the next tick. Once at start, in the background, it also sweeps every bucket's
 * abandoned uploads (`sweepAllIncompleteUploads`): those of a crashed process.
 */
export function startMaintenance(rt: Runtime, intervalMs: number, reconcileEveryMs = 60 * 60 * 1000): { stop(): Promise<void> } {
  // Only uploads older than UPLOAD_TEMP_MAX_AGE_MS go, so another replica's in-flight uploads in a
  // shared store are safe; a failure is logged, and the hourly reconciliation sweeps again.
  const stopSweep = new AbortController();
  const startupSweep = sweepAllIncompleteUploads(rt, rt.settings.uploadTempMaxAgeMs, stopSweep.signal).catch((err) =>
    rt.log.warn({ err }, 'start-up sweep of incomplete uploads failed'),
  );
  let running: Promise<void> | undefined;
  let lastReconcile = 0;
  let vacuumedAll = false;
  const tick = () => {
    if (running) return;
    running = (async () => {
      const steps: [string, () => Promise<unknown>][] = [
        ['ttl sweep', () => sweepExpiredEntries(rt)],
        ['lock sweep', () => sweepLocks(rt)],
        ['upload session sweep', () => sweepExpiredUploads(rt)],
        ['upload lock sweep', () => sweepUploadLocks(rt)],
        ['deleted volume purge', () => purgeDeletedVolumes(rt)],
        ['volume status', () => refreshVolumeStatuses(rt)],
      ];
      if (Date.now() - lastReconcile >= reconcileEveryMs) {
        lastReconcile = Date.now();
        steps.push(['reconciliation', () => reconcileAll(rt)]);
      }
      // Where Postgres runs no autovacuum (embedded PGlite): everything once at start (its
      // statistics start from zero), then each table as its statistics say it is due (vacuum.ts).
      steps.push(vacuumedAll ? ['vacuum', () => vacuumWhereDue(rt)] : ['vacuum', () => vacuumAll(rt).then(() => (vacuumedAll = true))]);
      for (const [name, step] of steps) {
        await step().catch((err) => rt.log.warn({ err }, `${name} failed`));
      }
    })().finally(() => {
      running = undefined;
    });
  };
  const timer = setInterval(tick, intervalMs);
  timer.unref();
  tick();
  return {
    stop: async () => {
      clearInterval(timer);
      stopSweep.abort(); // the bucket being swept finishes; the others wait for the next start
      await Promise.all([running, startupSweep]);
    },
  };
}

/**
 * Deletes entries whose TTL has passed (reads already hide them), with their objects, keeping the
 * volume counters exact. Runs in batches; returns how many it removed.
 */
export async function sweepExpiredEntries(rt: Runtime, batch = 500): Promise<number> {
  const now = new Date();
  const due = await rt.db.entry.findMany({
    where: { expiresAt: { lte: now } },
    select: { volumeId: true },
    distinct: ['volumeId'],
    take: 100,
  });
  let removed = 0;
  for (const { volumeId } of due) {
    const { purged } = await rt.db.$transaction(async (tx) => {
      await excludeVolumeWriters(tx, volumeId);
      await tx.$queryRaw`SELECT id FROM volumes WHERE id = ${volumeId} FOR UPDATE`;
      return purgeExpired(tx, volumeId, { limit: batch });
    });
    if (purged.length === 0) continue;
    removed += purged.length;
    const volume = await rt.db.volume.findUnique({ where: { id: volumeId }, select: { workspace: { select: { s3Bucket: true } } } });
    if (volume) await afterPurge(rt, volumeId, volume.workspace.s3Bucket, purged);
  }
  return removed;
}

/**
 * Sweeps the abandoned uploads (`BlobStore.sweepIncompleteUploads`) of every workspace with an
 * active bucket: temporary files or multipart uploads older than `maxAgeMs`. A bucket that fails is
 * logged and the others are still swept; `signal` stops it between buckets. Returns the totals
 * (bytes null if the store could not tell).
 */
export async function sweepAllIncompleteUploads(
  rt: Runtime,
  maxAgeMs = rt.settings.uploadTempMaxAgeMs,
  signal?: AbortSignal,
): Promise<SweepResult> {
  const olderThan = new Date(Date.now() - maxAgeMs);
  const workspaces = await rt.db.workspace.findMany({ where: { bucketStatus: 'active' }, select: { s3Bucket: true } });
  let removed = 0;
  let bytes: number | null = 0;
  for (const { s3Bucket: bucket } of workspaces) {
    if (signal?.aborted) break;
    try {
      const swept = await rt.blobs.sweepIncompleteUploads(bucket, olderThan);
      removed += swept.removed;
      bytes = bytes === null || swept.bytes === null ? null : bytes + swept.bytes;
      if (swept.removed > 0) rt.log.info({ bucket, ...swept }, 'removed abandoned uploads');
    } catch (err) {
      rt.log.warn({ err, bucket }, 'sweeping incomplete uploads failed');
    }
  }
  return { removed, bytes };
}

/** Reconciles every workspace with an active bucket: usage counters and objects. */
async function reconcileAll(rt: Runtime): Promise<void> {
  const workspaces = await rt.db.workspace.findMany({ where: { bucketStatus: 'active' }, select: { id: true } });
  for (const ws of workspaces) await reconcileWorkspace(rt, ws.id);
}

export interface WorkspaceReconciliation {
  volumes: UsageReport[];
  objects: ObjectReport;
}

/**
 * Recomputes usage for each of a workspace's volumes and reconciles its bucket with its rows
 * (abandoned uploads older than `uploadMaxAgeMs` included).
 */
export async function reconcileWorkspace(
  rt: Runtime,
  workspaceId: string,
  graceMs = ORPHAN_GRACE_MS,
  uploadMaxAgeMs = rt.settings.uploadTempMaxAgeMs,
): Promise<WorkspaceReconciliation> {
  const volumes = await rt.db.volume.findMany({ where: { workspaceId }, select: { id: true } });
  const usage: UsageReport[] = [];
  for (const v of volumes) usage.push(await reconcileVolumeUsage(rt, v.id));
  return { volumes: usage, objects: await reconcileWorkspaceObjects(rt, workspaceId, graceMs, uploadMaxAgeMs) };
}

/**
 * Runs reconciliation on demand for an org admin (REST and GraphQL).
 * @throws NotFoundError, ForbiddenError (needs `admin`; app keys never)
 */
export async function reconcileWorkspaceFor(rt: Runtime, p: Principal, route: WorkspaceRoute): Promise<WorkspaceReconciliation> {
  const { orgId, workspaceId } = route;
  await authorizeOrg(rt, p, orgId, { scope: 'admin', orgWide: true });
  const ws = isId(workspaceId) ? await rt.db.workspace.findFirst({ where: { id: workspaceId, orgId }, select: { id: true } }) : null;
  if (!ws) throw new NotFoundError('workspace', workspaceId);
  return reconcileWorkspace(rt, ws.id);
}

export interface UsageReport {
  volumeId: string;
  before: { usedBytes: number; entryCount: number; mountCount: number };
  after: { usedBytes: number; entryCount: number; mountCount: number };
  reconciledAt: Date;
}

/**
 * Recomputes a volume's usage counters from its rows (under the volume lock, so no write slips
 * between the count and the update) and stamps `last_reconciled_at`.
 */
export async function reconcileVolumeUsage(rt: Runtime, volumeId: string): Promise<UsageReport> {
  return rt.db.$transaction(async (tx) => {
    await excludeVolumeWriters(tx, volumeId);
    const [before] = await tx.$queryRaw<{ used_bytes: bigint; entry_count: number; mount_count: number }[]>`
      SELECT used_bytes, entry_count, mount_count FROM volumes WHERE id = ${volumeId} FOR UPDATE`;
    if (!before) throw new Error(`volume ${volumeId} not found`);
    const [counts] = await tx.$queryRaw<{ bytes: bigint; entries: number; mounts: number; reserved: bigint; reserved_files: number }[]>`
      SELECT (SELECT coalesce(sum(size_bytes), 0)::bigint FROM entries WHERE volume_id = ${volumeId}) AS bytes,
             (SELECT count(*)::int FROM entries WHERE volume_id = ${volumeId}) AS entries,
             (SELECT count(*)::int FROM mounts WHERE volume_id = ${volumeId}) AS mounts,
             (SELECT coalesce(sum(reserved_bytes), 0)::bigint FROM upload_sessions
                WHERE volume_id = ${volumeId} AND status IN ('uploading', 'completing')) AS reserved,
             (SELECT coalesce(sum(reserved_files), 0)::int FROM upload_sessions
                WHERE volume_id = ${volumeId} AND status IN ('uploading', 'completing')) AS reserved_files`;
    const reconciledAt = new Date();
    await tx.$executeRaw`
      UPDATE volumes SET used_bytes = ${counts?.bytes ?? 0n}, entry_count = ${counts?.entries ?? 0},
        mount_count = ${counts?.mounts ?? 0}, reserved_bytes = ${counts?.reserved ?? 0n}, reserved_files = ${counts?.reserved_files ?? 0},
        last_reconciled_at = ${reconciledAt} WHERE id = ${volumeId}`;
    return {
      volumeId,
      before: { usedBytes: Number(before.used_bytes), entryCount: before.entry_count, mountCount: before.mount_count },
      after: { usedBytes: Number(counts?.bytes ?? 0n), entryCount: counts?.entries ?? 0, mountCount: counts?.mounts ?? 0 },
      reconciledAt,
    };
  });
}

export interface ObjectReport {
  workspaceId: string;
  /** Objects that had no row and were older than the grace period: removed. */
  orphansRemoved: string[];
  /** Objects without a row that are too recent to judge (an upload may be committing). */
  orphansKept: number;
  /** File entries whose object is missing: reported, never touched (an operator must decide). */
  missingObjects: { entryId: string; path: string; blobKey: string }[];
  /**
   * Abandoned uploads removed (older than UPLOAD_TEMP_MAX_AGE_MS): temporary files of the local
   * store, counted per upload, or incomplete S3 multipart uploads, aborted.
   */
  incompleteUploadsRemoved: number;
  /** Bytes those uploads held; null when the store cannot tell (S3). */
  incompleteUploadBytes: number | null;
  /** Resumable and signed-URL upload sessions: expired ones ended now (their parts removed), and those still unfinished. */
  uploadSessions: { expiredRemoved: number; strayRemoved: number; unfinished: number; reservedBytes: number };
}

/** Objects younger than this may belong to an upload whose row is about to commit. */
export const ORPHAN_GRACE_MS = 15 * 60 * 1000;

/**
 * Compares a workspace's bucket with its rows: removes objects no row points to (once they are
 * older than the grace period, so in-flight uploads are never touched) and reports rows whose object
 * is gone. Sweeps the bucket's abandoned uploads too: those older than `uploadMaxAgeMs` (the longest
 * an upload may take, UPLOAD_TEMP_MAX_AGE_MS).
 */
export async function reconcileWorkspaceObjects(
  rt: Runtime,
  workspaceId: string,
  graceMs = ORPHAN_GRACE_MS,
  uploadMaxAgeMs = rt.settings.uploadTempMaxAgeMs,
): Promise<ObjectReport> {
  const ws = await rt.db.workspace.findUniqueOrThrow({
    where: { id: workspaceId },
    select: { s3Bucket: true, volumes: { select: { id: true } } },
  });
  const swept = await rt.blobs.sweepIncompleteUploads(ws.s3Bucket, new Date(Date.now() - uploadMaxAgeMs));
  const expiredSessions = await sweepExpiredUploads(rt);
  const strayRemoved = await removeStrayUploads(rt, workspaceId, ws.s3Bucket, new Date(Date.now() - graceMs));
  const unfinished = await unfinishedUploads(rt, workspaceId);
  const report: ObjectReport = {
    workspaceId,
    orphansRemoved: [],
    orphansKept: 0,
    missingObjects: [],
    incompleteUploadsRemoved: swept.removed,
    incompleteUploadBytes: swept.bytes,
    uploadSessions: {
      expiredRemoved: expiredSessions.expired,
      strayRemoved,
      unfinished: unfinished.count,
      reservedBytes: unfinished.reservedBytes,
    },
  };
  // Objects of unfinished upload sessions (and their .info/.part/.parts bookkeeping) are not orphans.
  const inFlight: string[] = [];
  for (const v of ws.volumes) inFlight.push(...(await keysInFlight(rt, v.id)));
  const ownedBySession = (key: string) => inFlight.some((k) => key === k || key.startsWith(`${k}.`));
  const cutoff = Date.now() - graceMs;
  const seen = new Set<string>();
  const orphans: string[] = [];
  // Objects are checked against rows a page at a time: one query per 500 objects.
  const judge = async (rt: Runtime, page: ObjectInfo[]) => {
    const rows = await rt.db.entry.findMany({ where: { blobKey: { in: page.map((o) => o.key) } }, select: { blobKey: true } });
    const owned = new Set(rows.map((r) => r.blobKey));
    for (const obj of page) {
      if (owned.has(obj.key) || ownedBySession(obj.key)) continue;
      if (obj.lastModified.getTime() <= cutoff) orphans.push(obj.key);
      else report.orphansKept++;
    }
  };
  let page: ObjectInfo[] = [];
  for await (const obj of rt.blobs.list(ws.s3Bucket, 'volumes/')) {
    seen.add(obj.key);
    page.push(obj);
    if (page.length === 500) {
      await judge(rt, page);
      page = [];
    }
  }
  if (page.length > 0) await judge(rt, page);
  if (orphans.length > 0) {
    await rt.blobs.deleteMany(ws.s3Bucket, orphans);
    report.orphansRemoved = orphans;
  }
  for (const v of ws.volumes) {
    const files = await rt.db.entry.findMany({
      where: { volumeId: v.id, blobKey: { startsWith: volumeObjectPrefix(v.id) } },
      select: { id: true, path: true, blobKey: true },
    });
    for (const f of files) {
      if (f.blobKey && !seen.has(f.blobKey) && !(await rt.blobs.head(ws.s3Bucket, f.blobKey))) {
        report.missingObjects.push({ entryId: f.id, path: f.path, blobKey: f.blobKey });
      }
    }
  }
  if (report.orphansRemoved.length || report.missingObjects.length || report.incompleteUploadsRemoved) {
    rt.log.warn({ report }, 'object reconciliation found differences');
  }
  return report;
}
