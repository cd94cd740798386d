import { db } from '../../db/client.js';
import { blobs } from '../../storage/blob-store.js';

const DELETE_BUCKET = 'delete_bucket';

/**
 * Records a bucket that must go (its rows are already deleted) as a durable job, so a failed or
 * interrupted deletion is finished later rather than forgotten.
 */
export async function enqueueBucketDeletion(bucket: string): Promise<void> {
  await db.job.upsert({
    where: { dedupeKey: `${DELETE_BUCKET}:${bucket}` },
    create: { kind: DELETE_BUCKET, dedupeKey: `${DELETE_BUCKET}:${bucket}`, payload: { bucket } },
    update: { status: 'queued', runAt: new Date() },
  });
}

/**
 * Retries queued bucket deletions (called at boot and periodically). Backs off per attempt; after
 * `maxAttempts` the job stays failed with its error for an operator to see.
 */
export async function runBucketDeletions(): Promise<number> {
  const jobs = await db.job.findMany({
    where: { kind: DELETE_BUCKET, status: 'queued', runAt: { lte: new Date() } },
    take: 50,
  });
  let done = 0;
  for (const job of jobs) {
    const bucket = (job.payload as { bucket?: string }).bucket;
    try {
      if (bucket) await blobs.deleteBucket(bucket);
      await db.job.delete({ where: { id: job.id } });
      done++;
    } catch (err) {
      const attempts = job.attempts + 1;
      await db.job.update({
        where: { id: job.id },
        data: {
          attempts,
          lastError: (err as Error).message.slice(0, 1000),
          status: attempts >= job.maxAttempts ? 'failed' : 'queued',
          runAt: new Date(Date.now() + 2 ** attempts * 1000),
        },
      });
    }
  }
  return done;
}
