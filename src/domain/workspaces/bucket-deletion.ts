import type { JobHandler } from '../../jobs/types.js';
import type { Runtime } from '../shared/runtime.js';

/** The job that deletes a workspace's bucket after its rows are gone. */
export const DELETE_BUCKET = 'delete_bucket';

/**
 * Records a bucket that must go (its rows are already deleted) as a durable job on the queue, so a
 * failed or interrupted deletion is retried with backoff rather than forgotten; after its last
 * attempt the job stays `failed` with its error for an operator to see.
 */
export async function enqueueBucketDeletion(rt: Runtime, bucket: string): Promise<void> {
  await rt.jobs.enqueue(rt.db, { kind: DELETE_BUCKET, dedupeKey: `${DELETE_BUCKET}:${bucket}`, payload: { bucket }, maxAttempts: 10 });
}

/** The `delete_bucket` job (registered by createApp). */
export const bucketDeletionJob = (rt: Runtime): JobHandler => ({
  async run(job) {
    const { bucket } = job.payload as { bucket?: string };
    if (bucket) await rt.blobs.deleteBucket(bucket);
  },
});
