import { createHash } from 'node:crypto';
import {
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  HeadBucketCommand,
  ListObjectsV2Command,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import type { BlobStore } from './blob-store.js';

export interface S3Settings {
  endpoint: string;
  region: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  forcePathStyle: boolean;
}

const errorName = (err: unknown) => (err instanceof S3ServiceException ? err.name : (err as Error)?.name);

/** Blob store on S3 or any S3-compatible endpoint (MinIO, Ceph, Swift s3api, s3rver in tests). */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly client: S3Client;

  constructor(settings: S3Settings) {
    this.client = new S3Client({
      endpoint: settings.endpoint,
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      ...(settings.accessKeyId && settings.secretAccessKey
        ? { credentials: { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } }
        : {}),
      // Flexible checksums make the SDK frame streamed bodies as aws-chunked, which S3-compatible
      // stores save verbatim (corrupt objects). Only checksum when an operation requires it.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    // Swift, Ceph and older MinIO insist on Content-MD5 for multi-object deletes.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const request = args.request as { headers?: Record<string, string>; body?: unknown };
        if (context.commandName === 'DeleteObjectsCommand' && request.headers && typeof request.body === 'string') {
          request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
        }
        return next(args);
      },
      { step: 'build', name: 'deleteObjectsContentMd5' },
    );
  }

  async createBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (err) {
      if (errorName(err) === 'BucketAlreadyOwnedByYou') return;
      // Some S3-compatible stores (s3rver, some Ceph/Swift setups) answer BucketAlreadyExists to the
      // owner too. The bucket is ours if we can reach it; someone else's answers 403 to HeadBucket.
      if (errorName(err) === 'BucketAlreadyExists' && (await this.bucketExists(bucket).catch(() => false))) return;
      throw err;
    }
  }

  async deleteBucket(bucket: string): Promise<void> {
    try {
      await this.deletePrefix(bucket, '');
      await this.client.send(new DeleteBucketCommand({ Bucket: bucket }));
    } catch (err) {
      if (errorName(err) === 'NoSuchBucket') return;
      throw err;
    }
  }

  async deletePrefix(bucket: string, prefix: string): Promise<number> {
    let removed = 0;
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, ContinuationToken: token, MaxKeys: 1000 }),
      );
      const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
      if (keys.length > 0) {
        const res = await this.client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }));
        if (res.Errors?.length) throw new Error(`S3 refused to delete ${res.Errors.length} objects in ${bucket}`);
        removed += keys.length;
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return removed;
  }

  async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (err) {
      if (errorName(err) === 'NotFound' || errorName(err) === 'NoSuchBucket') return false;
      throw err;
    }
  }
}
