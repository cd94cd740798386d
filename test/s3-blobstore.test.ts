import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import {
  HeadBucketCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../src/storage/s3.js';
import { startGateway, type TestGateway, waitFor } from './helpers/app.js';
import { abandonS3Upload, s3UploadKeys } from './helpers/blob-store-contract.js';
import { S3RVER_CREDENTIALS, type S3rverHandle, startS3rver } from './helpers/s3rver.js';

/**
 * The `s3` blob store against a real S3 protocol server (s3rver in a child process): bucket
 * provisioning and deletion through the gateway, failure reporting, and paged prefix deletion.
 */

let s3rver: S3rverHandle | undefined;
let gw: TestGateway | undefined;
let s3: S3Client;

const s3Env = (endpoint: string) => ({
  S3_ENDPOINT: endpoint,
  S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
  S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  S3_REGION: 'us-east-1',
});

/** The test's own client, independent of the gateway's. */
function testClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

async function bucketExists(bucket: string): Promise<boolean> {
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
    return true;
  } catch (err) {
    if (err instanceof S3ServiceException && err.$metadata.httpStatusCode === 404) return false;
    throw err;
  }
}

/** A port nothing listens on (bound once by us, then released). */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Runs `fn` over `items` with at most `limit` in flight. */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

beforeAll(async () => {
  s3rver = await startS3rver();
  s3 = testClient(s3rver.endpoint);
  gw = await startGateway(s3Env(s3rver.endpoint));
});

afterAll(async () => {
  await gw?.stop().catch((err) => console.error('gateway stop failed', err));
  s3?.destroy();
  await s3rver?.stop();
});

const api = () => gw as TestGateway;

describe('s3 blob store through the gateway', () => {
  it('reports the s3 blob store as ready', async () => {
    expect(api().app.blobStore.kind).toBe('s3');
    expect((await api().call('GET', '/readyz', undefined, null)).body).toEqual({ status: 'ready', database: 'embedded', blob_store: 's3' });
  });

  it('provisions a workspace bucket in S3, then deletes it with every object in it', async () => {
    const created = await api().call('POST', '/v1/orgs/s3org/workspaces', { name: 'Bucketed' });
    expect(created.status).toBe(201);
    const { workspace_id: id, s3_bucket: bucket } = created.body as { workspace_id: string; s3_bucket: string };
    expect(bucket).toBe(`vg-${id}`);

    const settled = await waitFor(async () => {
      const got = await api().call('GET', `/v1/orgs/s3org/workspaces/${id}`);
      return got.body.bucket_status !== 'pending' ? got.body : undefined;
    });
    expect(settled).toMatchObject({ bucket_status: 'active', bucket_error: null });
    expect(await bucketExists(bucket)).toBe(true);
    // Nothing was written locally: blobs live in S3.
    await expect(fs.stat(path.join(api().dataDir, 'blobs', bucket))).rejects.toMatchObject({ code: 'ENOENT' });

    const keys = ['volumes/a/notes/one.md', 'volumes/a/notes/two.md', 'volumes/b/x.bin', 'top.txt'];
    for (const key of keys) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: `body of ${key}` }));
    const listed = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect(listed.Contents?.map((o) => o.Key).sort()).toEqual([...keys].sort());

    const del = await api().call('DELETE', `/v1/orgs/s3org/workspaces/${id}`);
    expect(del.status).toBe(200);
    expect(await bucketExists(bucket)).toBe(false);
    const buckets = await s3.send(new ListBucketsCommand({}));
    expect((buckets.Buckets ?? []).map((b) => b.Name)).not.toContain(bucket);
    // Nothing left on s3rver's disk either, and no retry job was needed.
    await expect(fs.stat(path.join((s3rver as S3rverHandle).directory, bucket))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await api().app.database.prisma.job.count()).toBe(0);
  });

  it('S3BlobStore.deletePrefix pages through more than 1000 objects and keeps other prefixes', async () => {
    const store = new S3BlobStore({
      endpoint: (s3rver as S3rverHandle).endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      ...S3RVER_CREDENTIALS,
    });
    try {
      const bucket = 'vg-paging-test';
      await store.createBucket(bucket);
      await store.createBucket(bucket); // idempotent: already ours
      expect(await store.bucketExists(bucket)).toBe(true);

      const doomed = Array.from({ length: 1050 }, (_, i) => `volumes/doomed/${String(i).padStart(4, '0')}.txt`);
      const kept = ['volumes/doomed-not/keep.txt', 'volumes/kept/a.txt', 'volumes/kept/b.txt'];
      await inParallel([...doomed, ...kept], 16, (key) => store.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' })));

      expect(await store.deletePrefix(bucket, 'volumes/doomed/')).toBe(doomed.length);
      const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
      expect(left.Contents?.map((o) => o.Key).sort()).toEqual(kept);
      expect(await store.deletePrefix(bucket, 'volumes/doomed/')).toBe(0);

      await store.deleteBucket(bucket);
      expect(await store.bucketExists(bucket)).toBe(false);
      await store.deleteBucket(bucket); // already gone: still fine
    } finally {
      store.client.destroy();
    }
  });
});

describe('s3 blob store: abandoned multipart uploads', () => {
  it('reconcile on s3rver (no ListMultipartUploads) answers 200 with nothing swept and bytes unknown', async () => {
    const created = await api().call('POST', '/v1/orgs/s3org/workspaces', { name: 'Swept' });
    const { workspace_id: id, s3_bucket: bucket } = created.body as { workspace_id: string; s3_bucket: string };
    await waitFor(async () => (await api().call('GET', `/v1/orgs/s3org/workspaces/${id}`)).body.bucket_status === 'active');
    const store = api().app.blobStore as S3BlobStore;
    // What a gateway killed mid-upload leaves: a multipart upload with a part, never completed.
    await abandonS3Upload(store, bucket, 64 * 1024);
    // s3rver cannot list (501) or abort (405) multipart uploads: the sweep reports nothing rather than fail.
    expect(await s3UploadKeys(store, bucket)).toBeNull();

    const res = await api().call('POST', `/v1/orgs/s3org/workspaces/${id}/reconcile`);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ orphans_removed: [], incomplete_uploads_removed: 0, incomplete_upload_bytes: null });
    expect(await store.sweepIncompleteUploads(bucket, new Date(Date.now() + 60_000))).toEqual({ removed: 0, bytes: null });
    // Bucket deletion is not hindered by the upload either.
    expect((await api().call('DELETE', `/v1/orgs/s3org/workspaces/${id}`)).status).toBe(200);
    expect(await bucketExists(bucket)).toBe(false);
  });
});

describe('s3 blob store unreachable', () => {
  let broken: TestGateway | undefined;
  afterAll(async () => {
    await broken?.stop();
  });

  it('marks the workspace failed with the reason, and deleting it queues the bucket for later', async () => {
    broken = await startGateway(s3Env(`http://127.0.0.1:${await closedPort()}`));
    const created = await broken.call('POST', '/v1/orgs/s3org/workspaces', { name: 'Unlucky' });
    expect(created.status).toBe(201);
    const id: string = created.body.workspace_id;
    // The SDK retries connection errors (3 attempts with backoff) before giving up.
    const failed = await waitFor(async () => {
      const got = await broken!.call('GET', `/v1/orgs/s3org/workspaces/${id}`);
      return got.body.bucket_status !== 'pending' ? got.body : undefined;
    }, 30_000);
    expect(failed.bucket_status).toBe('failed');
    expect(failed.bucket_error).toMatch(/^bucket provisioning failed: \S/);

    // The workspace row goes at once; its bucket deletion is a job on the queue, retried with
    // backoff while the store cannot be reached.
    expect((await broken.call('DELETE', `/v1/orgs/s3org/workspaces/${id}`)).status).toBe(200);
    expect((await broken.call('GET', `/v1/orgs/s3org/workspaces/${id}`)).status).toBe(404);
    const retried = await waitFor(async () => {
      const [job] = await broken!.app.database.prisma.job.findMany({ where: { kind: 'delete_bucket' } });
      return job && job.status === 'queued' && job.lastError ? job : undefined;
    }, 30_000);
    expect(retried).toMatchObject({ attempts: 1, payload: { bucket: `vg-${id}` } });
    expect(retried.runAt.getTime()).toBeGreaterThan(Date.now());
  });
});
