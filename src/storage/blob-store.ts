/**
 * Where entry bytes live: one bucket per workspace, objects keyed by path inside it. Two adapters
 * implement it: `s3` (any S3-compatible store) and `local` (folders under DATA_DIR).
 */
export interface BlobStore {
  readonly kind: 's3' | 'local';
  /** Creates the bucket; succeeds if it already exists and is ours. */
  createBucket(bucket: string): Promise<void>;
  /** Removes every object in the bucket, then the bucket. Succeeds if it is already gone. */
  deleteBucket(bucket: string): Promise<void>;
  /** Removes every object whose key starts with `prefix`. Returns how many were removed. */
  deletePrefix(bucket: string, prefix: string): Promise<number>;
  /** True when the bucket exists (readiness and reconciliation). */
  bucketExists(bucket: string): Promise<boolean>;
}

/** The blob store of this process, set once by `createApp`. */
export let blobs: BlobStore;

export function setBlobStore(store: BlobStore | undefined): void {
  blobs = store as BlobStore;
}
