/** A workspace's bucket changed state (pending → active | failed). Ids and states only, never rows. */
export interface BucketStatusEvent {
  workspaceId: string;
  bucketStatus: 'pending' | 'active' | 'failed';
  error: string | null;
}

/** An entry was created, replaced, moved or deleted. Ids, paths and versions only. */
export interface EntryChangedEvent {
  volumeId: string;
  entryId: string;
  path: string;
  change: 'created' | 'updated' | 'moved' | 'deleted';
  /** The entry's version after the change (null once deleted). */
  version: number | null;
  /** Where a moved entry came from. */
  previousPath: string | null;
}

/** A lock was acquired, renewed, released or found expired. */
export interface LockEvent {
  kind: 'acquired' | 'renewed' | 'released' | 'expired';
  volumeId: string;
  lockId: string;
  partition: string;
  lockType: 'exclusive' | 'shared';
  holderAppId: string;
  fencingToken: number;
  expiresAt: Date;
}

/** Where a volume's reindex stands. Numbers only; sent at least every second while it runs. */
export interface ReindexProgressEvent {
  volumeId: string;
  status: ReindexStatus;
  embedderId: string;
  total: number;
  processed: number;
  failed: number;
  percent: number;
  startedAt: Date | null;
  completedAt: Date | null;
  error: string | null;
}

/** `cancelling`: a cancel was asked for and the worker has not stopped yet; `cancelled` follows. */
export type ReindexStatus = 'queued' | 'running' | 'cancelling' | 'completed' | 'failed' | 'cancelled';

/** Where a volume backup stands. Ids and numbers only; `completed` and `failed` are final. */
export interface BackupProgressEvent {
  backupId: string;
  volumeId: string;
  status: 'queued' | 'running' | 'completed' | 'failed';
  /** queued → copying_files (bytes copied ahead of the snapshot) → snapshot → done */
  phase: 'queued' | 'copying_files' | 'snapshot' | 'done';
  /** Entries in the snapshot (known once it is taken) and how many are written so far. */
  total: number;
  processed: number;
  percent: number;
  bytesCopied: number;
  error: string | null;
  startedAt: Date | null;
  completedAt: Date | null;
}

/** Where a resumable or signed-URL upload stands. Ids and numbers only; `completed`, `failed`, `aborted` and `expired` are final. */
export interface UploadProgressEvent {
  uploadId: string;
  volumeId: string;
  status: 'uploading' | 'completing' | 'completed' | 'failed' | 'aborted' | 'expired';
  bytesReceived: number;
  /** Null while a tus upload defers its length. */
  sizeBytes: number | null;
  entryId: string | null;
  entryVersion: number | null;
}

/**
 * Every event the domain publishes, keyed by topic with the routing id first. Subscribers re-check
 * access when they subscribe; payloads carry ids and numbers so nothing bypasses that check.
 */
export type Events = {
  bucketStatus: [workspaceId: string, payload: BucketStatusEvent];
  entryChanged: [volumeId: string, payload: EntryChangedEvent];
  lockEvents: [volumeId: string, payload: LockEvent];
  reindexProgress: [volumeId: string, payload: ReindexProgressEvent];
  backupProgress: [backupId: string, payload: BackupProgressEvent];
  uploadProgress: [uploadId: string, payload: UploadProgressEvent];
  /** Every replica evicts the key from its authentication cache. */
  apiKeyRevoked: [payload: { keyId: string }];
};
