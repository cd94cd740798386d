/**
 * The volume backup job: pre-copy of file objects, then one consistent snapshot. ~270 lines because
 * the two phases and their retry/ownership checks form one protocol with the job queue.
 */
import { type Job, Prisma, type Volume } from '../../generated/prisma/client.js';
import type { JobContext, JobHandler } from '../../jobs/types.js';
import { BlobNotFoundError } from '../../storage/blob-store.js';
import { liveEntries } from '../shared/live-entries.js';
import type { Runtime } from '../shared/runtime.js';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  ENTRIES_PER_PART,
  entriesPartKey,
  entryRecordOf,
  fileCopyKey,
  MANIFEST_KEY,
  type Manifest,
  type ManifestObject,
  putObject,
  settingsOf,
} from './format.js';
import { backupProgressOf, progressJsonOf, publishBackupProgress } from './progress.js';
import { BackupRun, COPY_CONCURRENCY, forEachLimit, permanent, type RunnableBackup, VanishedObjectError } from './run.js';

// The backup job. Consistency comes from reading every entry row in ONE transaction (the snapshot)
// and taking each file's bytes by the object key that snapshot names. Objects are immutable per key
// (a rewrite stores a new key; the old object is deleted only after the rewrite commits), so the
// bytes under a snapshot's key are exactly the bytes of that snapshot, as long as the object still
// exists when copied. To make that window small, files are first copied ahead of the snapshot
// without any transaction (pre-copy); the snapshot then copies only what changed since, and writes
// the entry records. Two ways to keep the snapshot whole:
//  - optimistic (REPEATABLE READ; writers are never blocked): if an object the snapshot names has
//    vanished, its entry was rewritten after the snapshot. The round is dropped, the new files are
//    pre-copied, and a newer snapshot is taken. Copies already made are reused (same key, same bytes).
//  - after OPTIMISTIC_ROUNDS such rounds, the last one holds a share lock on the volume row, which
//    every entry write must update (its counters, last before it commits; entries/commit.ts): writers
//    of this volume wait (only for the few files that changed since the pre-copy), and nothing the
//    snapshot names can be deleted meanwhile (objects are deleted only after the write commits).
// Embedded PGlite runs one transaction at a time, so there the snapshot is trivially whole.

export const BACKUP = 'volume_backup';
const OPTIMISTIC_ROUNDS = 3;
const SNAPSHOT_TIMEOUT_MS = 10 * 60_000;

/**
 * Copies the volume's current file objects, without a transaction. Only entries that exist when the
 * pass starts (ids are time-ordered), so busy writers cannot keep it going; what they add meanwhile
 * is left to the snapshot. Returns false when the job is no longer ours.
 */
async function preCopy(rt: Runtime, run: BackupRun, volumeId: string): Promise<boolean> {
  const newest = await rt.db.entry.findFirst({ where: { volumeId }, orderBy: { id: 'desc' }, select: { id: true } });
  if (!newest) return true;
  let cursor: string | undefined;
  for (;;) {
    if (run.ctx.signal.aborted) return false;
    const rows = await rt.db.entry.findMany({
      where: { ...liveEntries(volumeId), blobKey: { not: null }, id: { lte: newest.id, ...(cursor ? { gt: cursor } : {}) } },
      select: { id: true, path: true, blobKey: true, sha256: true },
      orderBy: { id: 'asc' },
      take: ENTRIES_PER_PART,
    });
    if (rows.length === 0) return true;
    await forEachLimit(rows, COPY_CONCURRENCY, async (r) => {
      try {
        await run.copyFile(r.blobKey as string, r.sha256, r.path);
      } catch (err) {
        // Rewritten or deleted since it was listed: the snapshot decides what is backed up.
        if (!(err instanceof BlobNotFoundError)) throw err;
      }
      run.report('copying_files', 0, 0);
    });
    cursor = rows.at(-1)?.id;
    if (!(await run.ctx.checkpoint({ progress: { ...run.report('copying_files', 0, 0) } }))) return false;
  }
}

interface Snapshot {
  at: Date;
  volume: Volume;
  parts: ManifestObject[];
  files: Set<string>;
  entryCount: number;
  entryBytes: bigint;
}

/**
 * Reads every live entry in one transaction and writes their records; copies any file the pre-copy
 * missed. Nothing in here may use `db` (PGlite would wait for this very transaction).
 * @throws VanishedObjectError (optimistic rounds), permanent errors
 */
function takeSnapshot(rt: Runtime, run: BackupRun, volumeId: string, round: number, locked: boolean): Promise<Snapshot> {
  return rt.db.$transaction(
    async (tx) => {
      if (locked) await tx.$queryRaw`SELECT id FROM volumes WHERE id = ${volumeId} FOR SHARE`;
      const volume = await tx.volume.findUnique({ where: { id: volumeId } });
      if (!volume || volume.deletedAt) throw permanent('the volume was deleted before its snapshot was taken');
      await rt.hooks.backupSnapshot?.({ volumeId, round, locked, inTransaction: true });
      const at = new Date();
      const total = await tx.entry.count({ where: liveEntries(volumeId, at) });
      const snap: Snapshot = { at, volume, parts: [], files: new Set(), entryCount: 0, entryBytes: 0n };
      run.report('snapshot', total, 0, true);
      let cursor: string | undefined;
      for (let part = 1; ; part++) {
        const rows = await tx.entry.findMany({
          where: { ...liveEntries(volumeId, at), ...(cursor ? { id: { gt: cursor } } : {}) },
          orderBy: { id: 'asc' },
          take: ENTRIES_PER_PART,
        });
        if (rows.length === 0) break;
        await forEachLimit(
          rows.filter((r) => r.blobKey),
          COPY_CONCURRENCY,
          async (r) => {
            const blobKey = r.blobKey as string;
            try {
              await run.copyFile(blobKey, r.sha256, r.path);
            } catch (err) {
              if (!(err instanceof BlobNotFoundError)) throw err;
              // Under the lock nobody can have deleted it: the object is lost, not replaced.
              if (locked) throw permanent(`the object of ${r.path} (${blobKey}) is missing from the store; run reconcile`);
              throw new VanishedObjectError(r.path, blobKey);
            }
            snap.files.add(fileCopyKey(blobKey));
          },
        );
        const data = Buffer.from(`${rows.map((r) => JSON.stringify(entryRecordOf(r))).join('\n')}\n`);
        const obj = await putObject(rt, run.bucket, run.backup.prefix, entriesPartKey(part), data, 'application/x-ndjson');
        const written: ManifestObject = { ...obj, kind: 'entries', entries: rows.length };
        run.objects.set(obj.key, written);
        snap.parts.push(written);
        snap.entryCount += rows.length;
        snap.entryBytes += rows.reduce((n, r) => n + r.sizeBytes, 0n);
        cursor = rows.at(-1)?.id;
        run.report('snapshot', total, snap.entryCount);
      }
      return snap;
    },
    {
      isolationLevel: locked ? Prisma.TransactionIsolationLevel.ReadCommitted : Prisma.TransactionIsolationLevel.RepeatableRead,
      timeout: SNAPSHOT_TIMEOUT_MS,
      maxWait: 60_000,
    },
  );
}

async function runBackup(rt: Runtime, job: Job, ctx: JobContext): Promise<void> {
  const { backupId } = job.payload as { backupId: string };
  const backup = await rt.db.backup.findUnique({ where: { id: backupId }, include: { workspace: { select: { s3Bucket: true } } } });
  if (!backup || backup.status === 'completed') return;
  try {
    await backUp(rt, backup, ctx);
  } catch (err) {
    const final = job.attempts >= job.maxAttempts || (err as { permanent?: boolean }).permanent === true;
    if (!final && !ctx.signal.aborted) {
      const row = await rt.db.backup.update({
        where: { id: backupId },
        data: { status: 'queued', error: `attempt ${job.attempts} failed (${(err as Error).message}); retrying` },
      });
      publishBackupProgress(rt, backupProgressOf(row));
    }
    throw err;
  }
}

async function backUp(rt: Runtime, backup: RunnableBackup, ctx: JobContext): Promise<void> {
  const volumeId = backup.volumeId;
  const bucket = backup.workspace.s3Bucket;
  const startedAt = backup.startedAt ?? new Date();
  // An attempt starts from an empty prefix, so the prefix ends up holding exactly what the manifest lists.
  await rt.blobs.deletePrefix(bucket, backup.prefix);
  const files = await rt.db.entry.aggregate({
    where: { ...liveEntries(volumeId), blobKey: { not: null } },
    _sum: { sizeBytes: true },
  });
  const run = new BackupRun(rt, backup, ctx, startedAt, Number(files._sum.sizeBytes ?? 0n));
  await rt.db.backup.update({
    where: { id: backup.id },
    data: { status: 'running', startedAt, error: null, progress: { ...run.report('copying_files', 0, 0, true) } },
  });

  let snap: Snapshot | undefined;
  for (let round = 1; !snap; round++) {
    if (!(await preCopy(rt, run, volumeId))) return;
    const locked = round > OPTIMISTIC_ROUNDS;
    try {
      await rt.hooks.backupSnapshot?.({ volumeId, round, locked, inTransaction: false });
      snap = await takeSnapshot(rt, run, volumeId, round, locked);
    } catch (err) {
      if (!(err instanceof VanishedObjectError)) throw err;
      rt.log.info({ backupId: backup.id, round, path: err.path }, 'backup: an entry changed under the snapshot; taking a newer one');
    }
    if (!(await ctx.checkpoint())) return;
  }

  // Copies and parts of dropped rounds that the final snapshot does not name.
  const keep = new Set([...snap.parts.map((p) => p.key), ...snap.files]);
  const stale = [...run.objects.keys()].filter((k) => !keep.has(k));
  if (stale.length > 0)
    await rt.blobs.deleteMany(
      bucket,
      stale.map((k) => backup.prefix + k),
    );
  const objects = [...run.objects.values()].filter((o) => keep.has(o.key)).sort((a, b) => a.key.localeCompare(b.key));

  const manifest: Manifest = {
    format: BACKUP_FORMAT,
    format_version: BACKUP_FORMAT_VERSION,
    backup_id: backup.id,
    requested_at: backup.createdAt.toISOString(),
    snapshot_at: snap.at.toISOString(),
    volume: {
      id: snap.volume.id,
      workspace_id: snap.volume.workspaceId,
      org_id: snap.volume.orgId,
      name: snap.volume.name,
      settings: settingsOf(snap.volume),
    },
    entry_count: snap.entryCount,
    entry_bytes: Number(snap.entryBytes),
    objects,
  };
  const written = await putObject(
    rt,
    bucket,
    backup.prefix,
    MANIFEST_KEY,
    Buffer.from(JSON.stringify(manifest, null, 2)),
    'application/json',
  );
  if (!(await ctx.checkpoint())) return;

  const completedAt = new Date();
  const row = await rt.db.backup.update({
    where: { id: backup.id },
    data: {
      status: 'completed',
      progress: { ...run.report('done', snap.entryCount, snap.entryCount) },
      entryCount: snap.entryCount,
      fileCount: snap.files.size,
      totalBytes: BigInt(objects.reduce((n, o) => n + o.size, written.size)),
      manifestSha256: written.sha256,
      snapshotAt: snap.at,
      completedAt,
      error: null,
    },
  });
  publishBackupProgress(rt, backupProgressOf(row));
}

/** The `backup` job (registered by createApp). */
export const backupJob = (rt: Runtime): JobHandler => ({
  run: (job, ctx) => runBackup(rt, job, ctx),
  async onFinalFailure(job, error) {
    const { backupId } = job.payload as { backupId: string };
    const backup = await rt.db.backup.findUnique({ where: { id: backupId }, include: { workspace: { select: { s3Bucket: true } } } });
    if (!backup) return;
    // A failed backup leaves no half-written snapshot behind.
    await rt.blobs
      .deletePrefix(backup.workspace.s3Bucket, backup.prefix)
      .catch((err) => rt.log.warn({ err, backupId }, 'could not remove a failed backup'));
    const row = await rt.db.backup.update({
      where: { id: backupId },
      data: {
        status: 'failed',
        error: error.message.slice(0, 1000),
        completedAt: new Date(),
        progress: { ...progressJsonOf(backup), phase: 'done' },
      },
    });
    publishBackupProgress(rt, backupProgressOf(row));
  },
});
