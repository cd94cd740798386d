import type { Readable } from 'node:stream';
import { BlobNotFoundError, type BlobStore, BlobTooLargeError, RangeNotSatisfiableError } from './blob-store.js';

/** Sees every blob store call: `around` runs it (a trace span), `onError` hears of store failures (metrics). */
export interface BlobStoreObserver {
  around?<T>(operation: string, run: () => Promise<T>): Promise<T>;
  onError?(operation: string, err: unknown): void;
}

/**
 * Failures that are the store's: not a missing object or range asked for, not an upload over its
 * limit, and not an upload whose body (the client's request) failed.
 */
function storeFailure(err: unknown, body?: Readable): boolean {
  if (err instanceof BlobNotFoundError || err instanceof RangeNotSatisfiableError || err instanceof BlobTooLargeError) return false;
  return !body?.errored;
}

/** `store` with every call seen by `observer`; behaviour unchanged. */
export function observedBlobStore(store: BlobStore, observer: BlobStoreObserver): BlobStore {
  const call = async <T>(operation: string, run: () => Promise<T>, body?: Readable): Promise<T> => {
    try {
      return await (observer.around ? observer.around(operation, run) : run());
    } catch (err) {
      if (storeFailure(err, body)) observer.onError?.(operation, err);
      throw err;
    }
  };
  return {
    kind: store.kind,
    createBucket: (bucket) => call('createBucket', () => store.createBucket(bucket)),
    deleteBucket: (bucket) => call('deleteBucket', () => store.deleteBucket(bucket)),
    deletePrefix: (bucket, prefix) => call('deletePrefix', () => store.deletePrefix(bucket, prefix)),
    bucketExists: (bucket) => call('bucketExists', () => store.bucketExists(bucket)),
    put: (bucket, key, body, opts) => call('put', () => store.put(bucket, key, body, opts), body),
    get: (bucket, key, range) => call('get', () => store.get(bucket, key, range)),
    head: (bucket, key) => call('head', () => store.head(bucket, key)),
    delete: (bucket, key) => call('delete', () => store.delete(bucket, key)),
    deleteMany: (bucket, keys) => call('deleteMany', () => store.deleteMany(bucket, keys)),
    list: (bucket, prefix) => ({
      [Symbol.asyncIterator]: async function* () {
        try {
          yield* store.list(bucket, prefix);
        } catch (err) {
          if (storeFailure(err)) observer.onError?.('list', err);
          throw err;
        }
      },
    }),
    sweepIncompleteUploads: (bucket, olderThan) => call('sweepIncompleteUploads', () => store.sweepIncompleteUploads(bucket, olderThan)),
    signedUrl: (bucket, key, opts) => call('signedUrl', () => store.signedUrl(bucket, key, opts)),
    signedPutUrl: (bucket, key, opts) => call('signedPutUrl', () => store.signedPutUrl(bucket, key, opts)),
    ...(store.signedMultipart && store.completeMultipart && store.abortMultipart
      ? {
          signedMultipart: (bucket: string, key: string, opts: Parameters<NonNullable<BlobStore['signedMultipart']>>[2]) =>
            call('signedMultipart', () => (store.signedMultipart as NonNullable<BlobStore['signedMultipart']>)(bucket, key, opts)),
          completeMultipart: (bucket: string, key: string, uploadId: string, parts: { partNumber: number; etag: string }[]) =>
            call('completeMultipart', () =>
              (store.completeMultipart as NonNullable<BlobStore['completeMultipart']>)(bucket, key, uploadId, parts),
            ),
          abortMultipart: (bucket: string, key: string, uploadId: string) =>
            call('abortMultipart', () => (store.abortMultipart as NonNullable<BlobStore['abortMultipart']>)(bucket, key, uploadId)),
        }
      : {}),
  };
}
