/**
 * The S3 BlobStore adapter. One file (~500 lines) because it is one class implementing the BlobStore
 * interface: multipart streaming puts, ranged reads, batch deletes and the abandoned-upload sweep
 * share its client and error mapping; the interface and its contract tests are the unit to read.
 */
import { createHash } from 'node:crypto';
import { pipeline, Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Logger } from 'pino';
import {
  BlobNotFoundError,
  type BlobStore,
  type ByteRange,
  type GetResult,
  type ObjectInfo,
  type PutOptions,
  type PutResult,
  RangeNotSatisfiableError,
  type SignedPart,
  type SignedPut,
  type SignedPutOptions,
  type SignedUrlOptions,
  type SweepResult,
} from './blob-store.js';
import { contentDisposition } from './content-disposition.js';
import { ByteMeter } from './meter.js';
import { assertBlobKey, assertByteRange } from './validate.js';

export interface S3Settings {
  endpoint: string;
  region: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  forcePathStyle: boolean;
  /** The endpoint clients reach the store at, when it differs from `endpoint` (presigned URLs are signed for it). */
  publicEndpoint?: string | undefined;
}

const errorName = (err: unknown) => (err instanceof S3ServiceException ? err.name : (err as Error)?.name);
const httpStatus = (err: unknown) => (err instanceof S3ServiceException ? err.$metadata.httpStatusCode : undefined);
/** The store does not implement the operation (s3rver answers ListMultipartUploads 501, AbortMultipartUpload 405). */
const isUnsupported = (err: unknown) =>
  ['NotImplemented', 'MethodNotAllowed'].includes(errorName(err) ?? '') || [501, 405].includes(httpStatus(err) ?? 0);
const isMissing = (err: unknown) => ['NoSuchKey', 'NotFound', 'NoSuchBucket'].includes(errorName(err) ?? '') || httpStatus(err) === 404;

/**
 * Multipart sizing: S3's minimum 5 MiB parts, 2 in flight while a third fills, so an upload holds
 * 15 MiB whatever the object's size. 5 MiB parts reach 48 GiB in S3's 10,000 parts; larger
 * `maxBytes` limits get proportionally larger parts.
 */
const PART_SIZE = 5 * 1024 * 1024;
const QUEUE_SIZE = 2;
const MAX_PARTS = 10_000;
/** The first part buffer starts this small and doubles, so a small object costs about its own size. */
const FIRST_BUFFER = 64 * 1024;
/** S3 deletes at most this many keys per DeleteObjects request. */
const DELETE_BATCH = 1000;

/** How far a put got, for cleaning up after it fails. */
interface UploadProgress {
  uploadId: string | undefined;
  /** PutObject or CompleteMultipartUpload went out: the object may exist whatever the answer. */
  finalRequestSent: boolean;
}

/** Blob store on S3 or any S3-compatible endpoint (MinIO, Ceph, Swift s3api, s3rver in tests). */
export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly client: S3Client;
  /** Signs the URLs handed to clients: for S3_PUBLIC_ENDPOINT when set (SigV4 signs the host), else `client`. */
  private readonly presigner: S3Client;

  constructor(
    settings: S3Settings,
    private readonly log?: Logger,
  ) {
    this.client = S3BlobStore.makeClient(settings, settings.endpoint);
    this.presigner = settings.publicEndpoint ? S3BlobStore.makeClient(settings, settings.publicEndpoint) : this.client;
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

  private static makeClient(settings: S3Settings, endpoint: string): S3Client {
    return new S3Client({
      endpoint,
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

  async put(bucket: string, key: string, body: Readable, opts: PutOptions = {}): Promise<PutResult> {
    try {
      assertBlobKey(key);
    } catch (err) {
      body.destroy(); // whatever happens, the caller's stream is consumed or released
      throw err;
    }
    const meter = new ByteMeter(opts.maxBytes);
    // The callback only keeps pipeline from throwing; the cause is read from meter.errored, which
    // holds the body's error or the size limit's.
    pipeline(body, meter, () => {});
    const partSize = Math.max(PART_SIZE, Math.ceil((opts.maxBytes ?? 0) / MAX_PARTS));
    const progress: UploadProgress = { uploadId: undefined, finalRequestSent: false };
    try {
      await this.upload(bucket, key, meter, partSize, opts.contentType, progress);
    } catch (err) {
      const cause = meter.errored ?? err;
      // Whoever stopped first, the caller's stream is released now, not when pipeline gets to it.
      meter.destroy();
      body.destroy();
      await this.cleanUpFailedPut(bucket, key, progress.uploadId, progress.finalRequestSent);
      throw cause;
    }
    return { size: meter.bytes, sha256: meter.sha256 };
  }

  /**
   * Streams `source` to S3: one PutObject when it fits in a part, else a multipart upload with up to
   * QUEUE_SIZE parts in flight. Parts are assembled in a fixed set of QUEUE_SIZE + 1 buffers that are
   * reused, and each incoming chunk is copied out at once, so memory is those buffers whatever the
   * size, and the garbage is only short-lived chunks (lib-storage's Upload retains the chunks of a
   * part and allocates a fresh copy of every part; on a 200 MiB upload that garbage made RSS grow by
   * up to ~100 MiB before V8 collected it).
   */
  private async upload(
    bucket: string,
    key: string,
    source: Readable,
    partSize: number,
    contentType: string | undefined,
    progress: UploadProgress,
  ): Promise<void> {
    // Full-size part buffers: at most QUEUE_SIZE in flight and one being filled.
    const free: Buffer[] = [];
    let allocated = 0;
    const takeBuffer = () => {
      const reused = free.pop();
      if (reused) return reused;
      allocated += 1;
      return Buffer.allocUnsafe(partSize);
    };
    const parts: CompletedPart[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: { error: unknown } | undefined;
    let partNumber = 0;
    let current: Buffer = Buffer.allocUnsafe(FIRST_BUFFER);
    let filled = 0;
    const grow = () => {
      const bigger = Buffer.allocUnsafe(Math.min(partSize, current.length * 2));
      current.copy(bigger, 0, 0, filled);
      if (bigger.length === partSize) allocated += 1;
      current = bigger;
    };

    const sendPart = async (last = false) => {
      if (!progress.uploadId) {
        const created = await this.client.send(
          new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...(contentType ? { ContentType: contentType } : {}) }),
        );
        progress.uploadId = created.UploadId;
        if (!progress.uploadId) throw new Error('S3 answered CreateMultipartUpload without an UploadId');
      }
      partNumber += 1;
      if (partNumber > MAX_PARTS) throw new Error(`upload of ${key} needs more than ${MAX_PARTS} parts`);
      const buffer = current;
      const number = partNumber;
      const sent: Promise<void> = this.client
        .send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: progress.uploadId,
            PartNumber: number,
            Body: buffer.subarray(0, filled),
            ContentLength: filled,
          }),
        )
        .then((res) => {
          if (!res.ETag) throw new Error(`S3 answered UploadPart ${number} without an ETag`);
          parts.push({ PartNumber: number, ETag: res.ETag });
        })
        .catch((error: unknown) => {
          failure ??= { error };
        })
        .finally(() => {
          // Only now has the SDK finished with the buffer (retries included): it may be refilled.
          free.push(buffer);
          inFlight.delete(sent);
        });
      inFlight.add(sent);
      if (last) return;
      while (!failure && free.length === 0 && allocated > QUEUE_SIZE) await Promise.race(inFlight);
      if (failure) throw failure.error;
      current = takeBuffer();
      filled = 0;
    };

    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        for (let offset = 0; offset < chunk.length; ) {
          if (filled === current.length) grow();
          const copied = chunk.copy(current, filled, offset);
          filled += copied;
          offset += copied;
          if (filled === partSize) await sendPart();
        }
      }
      if (!progress.uploadId) {
        progress.finalRequestSent = true;
        await this.client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: current.subarray(0, filled),
            ContentLength: filled,
            ...(contentType ? { ContentType: contentType } : {}),
          }),
        );
        return;
      }
      if (filled > 0) await sendPart(true);
      await Promise.all(inFlight);
      if (failure) throw failure.error;
      parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      progress.finalRequestSent = true;
      await this.client.send(
        new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: progress.uploadId, MultipartUpload: { Parts: parts } }),
      );
    } finally {
      // Parts still uploading would outlive an abort; let them finish (or fail) first.
      await Promise.all(inFlight);
    }
  }

  /**
   * Leaves nothing of a failed put: its multipart upload's parts are aborted, and once the final
   * PutObject/CompleteMultipartUpload went out the object may exist whatever the answer was, so
   * the key is deleted too (a failure before that point leaves an older object under the key as it
   * was). Cleanup failures are logged, not thrown: the caller needs the put's own error.
   */
  private async cleanUpFailedPut(bucket: string, key: string, uploadId: string | undefined, finalRequestSent: boolean): Promise<void> {
    if (uploadId) {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId })).catch((err) => {
        if (errorName(err) !== 'NoSuchUpload') this.log?.warn({ err, bucket, key, uploadId }, 'could not abort a failed multipart upload');
      });
    }
    if (finalRequestSent) {
      await this.delete(bucket, key).catch((err) => this.log?.warn({ err, bucket, key }, 'could not delete the object of a failed upload'));
    }
  }

  /**
   * Aborts the bucket's multipart uploads initiated before `olderThan` (ListMultipartUploads, page by
   * page), which frees their parts. Puts that fail in this process abort their own; these are the
   * uploads of a process that died mid-put. Bytes are not reported (null): S3 lists no part sizes.
   * A store without ListMultipartUploads/AbortMultipartUpload (s3rver) has nothing to sweep.
   */
  async sweepIncompleteUploads(bucket: string, olderThan: Date): Promise<SweepResult> {
    const cutoff = olderThan.getTime();
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    try {
      for (;;) {
        const page: ListMultipartUploadsCommandOutput = await this.client.send(
          new ListMultipartUploadsCommand({ Bucket: bucket, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker, MaxUploads: 1000 }),
        );
        for (const upload of page.Uploads ?? []) {
          const { Key, UploadId, Initiated } = upload;
          // Without its start time an upload's age is unknown: leave it.
          if (Key === undefined || !UploadId || !Initiated || Initiated.getTime() >= cutoff) continue;
          try {
            await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key, UploadId }));
            removed += 1;
          } catch (err) {
            if (errorName(err) === 'NoSuchUpload') continue; // completed or aborted meanwhile (another replica)
            throw err;
          }
        }
        // Markers name the last upload listed, so the uploads aborted above shift nothing.
        const next = { key: page.NextKeyMarker, uploadId: page.NextUploadIdMarker };
        if (!page.IsTruncated || (next.key === keyMarker && next.uploadId === uploadIdMarker) || (!next.key && !next.uploadId)) break;
        keyMarker = next.key;
        uploadIdMarker = next.uploadId;
      }
    } catch (err) {
      if (errorName(err) === 'NoSuchBucket') return { removed, bytes: null };
      if (!isUnsupported(err)) throw err;
      this.log?.debug({ bucket, err: errorName(err) }, 'the S3 store cannot list or abort multipart uploads: nothing to sweep');
    }
    return { removed, bytes: null };
  }

  async get(bucket: string, key: string, range?: ByteRange): Promise<GetResult> {
    assertBlobKey(key);
    assertByteRange(range);
    let res: GetObjectCommandOutput;
    try {
      res = await this.client.send(
        new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: `bytes=${range.start}-${range.end ?? ''}` } : {}) }),
      );
    } catch (err) {
      if (isMissing(err)) throw new BlobNotFoundError(bucket, key);
      if (errorName(err) === 'InvalidRange' || httpStatus(err) === 416) {
        const size = Number((err as { ActualObjectSize?: unknown }).ActualObjectSize);
        throw new RangeNotSatisfiableError(Number.isFinite(size) ? size : ((await this.head(bucket, key))?.size ?? 0));
      }
      throw err;
    }
    const body = (res.Body as Readable | undefined) ?? Readable.from([]);
    const contentType = res.ContentType;
    if (!range) {
      const size = res.ContentLength ?? 0;
      return { body, size, contentLength: size, contentType };
    }
    const served = parseContentRange(res.ContentRange);
    const size = served?.size ?? res.ContentLength ?? 0;
    // Real S3 answers 416 for any range of an empty object; s3rver answers 206 "bytes 0-0/0".
    if (range.start >= size) {
      body.destroy();
      throw new RangeNotSatisfiableError(size);
    }
    const end = Math.min(range.end ?? size - 1, size - 1);
    const wanted = end - range.start + 1;
    const servedStart = served?.start ?? 0;
    const servedEnd = served?.end ?? size - 1;
    if (servedStart !== range.start || servedEnd < end) {
      body.destroy();
      throw new Error(`S3 answered bytes ${servedStart}-${servedEnd} of ${key} to a request for ${range.start}-${end}`);
    }
    // Some S3-compatible stores serve more than asked (s3rver reads "bytes=0-0" as "bytes=0-").
    const limited = servedEnd > end ? takeBytes(body, wanted) : body;
    return { body: limited, size, contentLength: wanted, contentType, range: { start: range.start, end } };
  }

  async head(bucket: string, key: string): Promise<{ size: number; contentType: string | undefined } | null> {
    assertBlobKey(key);
    try {
      const res = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { size: res.ContentLength ?? 0, contentType: res.ContentType };
    } catch (err) {
      if (isMissing(err)) return null;
      throw err;
    }
  }

  async delete(bucket: string, key: string): Promise<void> {
    assertBlobKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    } catch (err) {
      if (isMissing(err)) return;
      throw err;
    }
  }

  async deleteMany(bucket: string, keys: readonly string[]): Promise<void> {
    for (const key of keys) assertBlobKey(key);
    for (let i = 0; i < keys.length; i += DELETE_BATCH) {
      const batch = keys.slice(i, i + DELETE_BATCH).map((Key) => ({ Key }));
      try {
        const res = await this.client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch, Quiet: true } }));
        if (res.Errors?.length) {
          const first = res.Errors[0];
          throw new Error(
            `S3 refused to delete ${res.Errors.length} objects in ${bucket} (first: ${first?.Key}: ${first?.Code} ${first?.Message})`,
          );
        }
      } catch (err) {
        if (errorName(err) === 'NoSuchBucket') return;
        throw err;
      }
    }
  }

  async *list(bucket: string, prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix || undefined, ContinuationToken: token, MaxKeys: 1000 }),
        );
      } catch (err) {
        if (errorName(err) === 'NoSuchBucket') return;
        throw err;
      }
      for (const o of page.Contents ?? []) {
        if (o.Key !== undefined) yield { key: o.Key, size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async signedUrl(bucket: string, key: string, opts: SignedUrlOptions): Promise<string> {
    assertBlobKey(key);
    const command = new GetObjectCommand({
      Bucket: bucket,
      Key: key,
      ResponseContentDisposition: contentDisposition(opts.filename),
      ...(opts.contentType ? { ResponseContentType: opts.contentType } : {}),
    });
    return getSignedUrl(this.presigner, command, { expiresIn: opts.expiresIn });
  }

  async signedMultipart(
    bucket: string,
    key: string,
    opts: SignedPutOptions & { partSize: number },
  ): Promise<{ uploadId: string; parts: SignedPart[] }> {
    assertBlobKey(key);
    const count = Math.max(1, Math.ceil(opts.size / opts.partSize));
    if (count > MAX_PARTS) throw new RangeError(`${count} parts: S3 takes at most ${MAX_PARTS}`);
    const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ContentType: opts.contentType }));
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error('S3 answered CreateMultipartUpload without an UploadId');
    const parts: SignedPart[] = [];
    for (let n = 1; n <= count; n++) {
      const size = n < count ? opts.partSize : opts.size - opts.partSize * (count - 1);
      const command = new UploadPartCommand({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumber: n, ContentLength: size });
      const url = await getSignedUrl(this.presigner, command, { expiresIn: opts.expiresIn, signableHeaders: new Set(['content-length']) });
      parts.push({ partNumber: n, size, url, headers: { 'Content-Length': String(size) } });
    }
    return { uploadId, parts };
  }

  async completeMultipart(bucket: string, key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<void> {
    assertBlobKey(key);
    const sorted = [...parts].sort((a, b) => a.partNumber - b.partNumber);
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: sorted.map((p) => ({ PartNumber: p.partNumber, ETag: p.etag })) },
      }),
    );
  }

  async abortMultipart(bucket: string, key: string, uploadId: string): Promise<void> {
    assertBlobKey(key);
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      // Gone already, or a store that cannot abort (s3rver): its parts stay invisible until a lifecycle rule.
      if (errorName(err) === 'NoSuchUpload' || isUnsupported(err)) return;
      throw err;
    }
  }

  async signedPutUrl(bucket: string, key: string, opts: SignedPutOptions): Promise<SignedPut> {
    assertBlobKey(key);
    const command = new PutObjectCommand({ Bucket: bucket, Key: key, ContentLength: opts.size, ContentType: opts.contentType });
    const url = await getSignedUrl(this.presigner, command, {
      expiresIn: opts.expiresIn,
      signableHeaders: new Set(['content-length', 'content-type']),
    });
    return { url, headers: { 'Content-Type': opts.contentType, 'Content-Length': String(opts.size) } };
  }
}

/** "bytes 0-9/100" → its numbers; undefined when absent or unparsable ("bytes 0-9/*"). */
function parseContentRange(header: string | undefined): { start: number; end: number; size: number } | undefined {
  const m = header?.match(/^bytes (\d+)-(\d+)\/(\d+)$/);
  return m ? { start: Number(m[1]), end: Number(m[2]), size: Number(m[3]) } : undefined;
}

/** The first `n` bytes of `source`; ending early destroys `source` (frees its socket). */
function takeBytes(source: Readable, n: number): Readable {
  return Readable.from(
    (async function* () {
      let left = n;
      for await (const chunk of source as AsyncIterable<Buffer>) {
        if (chunk.length >= left) {
          yield chunk.subarray(0, left);
          return;
        }
        left -= chunk.length;
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}
