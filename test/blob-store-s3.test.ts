import { S3BlobStore } from '../src/storage/s3.js';
import { blobStoreContract } from './helpers/blob-store-contract.js';
import { S3RVER_CREDENTIALS, startS3rver } from './helpers/s3rver.js';

/**
 * The `s3` blob store against a real S3 protocol server (s3rver in a child process). s3rver
 * implements neither ListMultipartUploads nor AbortMultipartUpload, so the contract cannot look for
 * leftover parts here; it checks what a reader can see (head, list) instead.
 */
blobStoreContract('s3 (s3rver)', async () => {
  const s3rver = await startS3rver();
  const store = new S3BlobStore({ endpoint: s3rver.endpoint, region: 'us-east-1', forcePathStyle: true, ...S3RVER_CREDENTIALS });
  return {
    store,
    teardown: async () => {
      store.client.destroy();
      await s3rver.stop();
    },
  };
});
