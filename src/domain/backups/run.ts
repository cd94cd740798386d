import type { Backup } from '../../generated/prisma/client.js';
import type { JobContext } from '../../jobs/types.js';
import type { Runtime } from '../shared/runtime.js';
import { fileCopyKey, type ManifestObject } from './format.js';
import { type BackupProgressJson, backupProgressOf, publishBackupProgress } from './progress.js';

// One attempt of a backup job (backup-job.ts): the file copies it made, the objects it wrote and the
// progress it reported.

const PUBLISH_EVERY_MS = 250;
/** File copies in flight at once (object stores reward parallel requests). */
export const COPY_CONCURRENCY = 4;

export type RunnableBackup = Backup & { workspace: { s3Bucket: string } };

/** Failures retrying cannot fix: the job fails at once. */
export function permanent(message: string): Error {
  return Object.assign(new Error(message), { permanent: true });
}

/** An object the snapshot names was deleted after the snapshot was taken (its entry was rewritten). */
export class VanishedObjectError extends Error {
  constructor(
    readonly path: string,
    readonly blobKey: string,
  ) {
    super(`the object of ${path} (${blobKey}) is missing from the store`);
  }
}

/** State of one attempt: the objects written so far and the progress last reported. */
export class BackupRun {
  /** Every object written under the prefix (relative key → what the manifest would say). */
  readonly objects = new Map<string, ManifestObject>();
  /** Source object key → its copy, so a key is copied once however many rounds name it. */
  private readonly copied = new Set<string>();
  bytesCopied = 0;
  private progress: BackupProgressJson = { phase: 'copying_files', total: 0, processed: 0, percent: 0, bytes_copied: 0 };
  private lastPublish = 0;

  constructor(
    private readonly rt: Runtime,
    readonly backup: RunnableBackup,
    readonly ctx: JobContext,
    readonly startedAt: Date,
    private readonly fileBytesEstimate: number,
  ) {}

  get bucket() {
    return this.backup.workspace.s3Bucket;
  }

  /** Copies a file entry's bytes under the backup prefix, checking them against the row's sha256. @throws BlobNotFoundError */
  async copyFile(blobKey: string, expectedSha: string | null, path: string): Promise<void> {
    if (this.copied.has(blobKey)) return;
    const key = fileCopyKey(blobKey);
    const rt = this.rt;
    const { body } = await rt.blobs.get(this.bucket, blobKey);
    const stored = await rt.blobs.put(this.bucket, this.backup.prefix + key, body);
    if (expectedSha && stored.sha256 !== expectedSha) {
      await rt.blobs.delete(this.bucket, this.backup.prefix + key);
      throw permanent(`the stored bytes of ${path} (${blobKey}) have sha256 ${stored.sha256}, its entry records ${expectedSha}`);
    }
    this.copied.add(blobKey);
    this.objects.set(key, { key, kind: 'file', sha256: stored.sha256, size: stored.size });
    this.bytesCopied += stored.size;
  }

  /** Publishes progress (at most every 250 ms unless forced); percent never goes backwards. */
  report(phase: BackupProgressJson['phase'], total: number, processed: number, force = false): BackupProgressJson {
    const share =
      phase === 'copying_files'
        ? 50 * Math.min(1, this.bytesCopied / Math.max(1, this.fileBytesEstimate))
        : phase === 'snapshot'
          ? 50 + 50 * (total === 0 ? 1 : processed / total)
          : 100;
    const percent = Math.max(this.progress.percent, Math.floor(share * 10) / 10);
    this.progress = { phase, total, processed, percent: phase === 'done' ? 100 : Math.min(99.9, percent), bytes_copied: this.bytesCopied };
    // The final event comes from the row (completed or failed), not from here.
    if (phase !== 'done' && (force || Date.now() - this.lastPublish >= PUBLISH_EVERY_MS)) {
      this.lastPublish = Date.now();
      publishBackupProgress(
        this.rt,
        backupProgressOf({ ...this.backup, status: 'running', progress: { ...this.progress }, error: null, startedAt: this.startedAt }),
      );
    }
    return this.progress;
  }
}

/** Runs `fn` over `items`, `limit` at a time; waits for all of them before throwing the first error. */
export async function forEachLimit<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async () => {
    while (!failure && next < items.length) {
      const item = items[next++] as T;
      try {
        await fn(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.error;
}
