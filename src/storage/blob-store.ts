import type { Readable } from 'node:stream';

/** What a finished upload measured while streaming. */
export interface PutResult {
  size: number;
  /** Hex sha256 of the bytes as stored. */
  sha256: string;
}

export interface PutOptions {
  contentType?: string;
  /** Refuse (BlobTooLargeError) and leave nothing behind once the body exceeds this many bytes. */
  maxBytes?: number;
}

export interface ByteRange {
  start: number;
  /** Inclusive; omitted means to the end. */
  end?: number;
}

export interface GetResult {
  body: Readable;
  /** Size of the whole object. */
  size: number;
  /** Bytes in `body` (the range's length when a range was asked for). */
  contentLength: number;
  contentType: string | undefined;
  /** Set when a range was served: the inclusive byte positions. */
  range?: { start: number; end: number };
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

/** What `sweepIncompleteUploads` cleaned up. */
export interface SweepResult {
  /**
   * Abandoned uploads removed: on the local store, temporary files grouped by upload (an upload's
   * data file and its `.meta` sidecar count once); on S3, incomplete multipart uploads aborted.
   */
  removed: number;
  /**
   * Bytes freed, or null where the store cannot tell: S3 does not list the size of an incomplete
   * upload's parts (it would take a ListParts per upload), so its sweeps report `removed` only.
   */
  bytes: number | null;
}

export interface SignedUrlOptions {
  /** Seconds the URL stays valid. */
  expiresIn: number;
  /** Offered as the download's file name (Content-Disposition). */
  filename?: string;
  contentType?: string;
}

export interface SignedPutOptions {
  /** Seconds the URL stays valid. */
  expiresIn: number;
  /** The exact number of bytes the PUT must carry. */
  size: number;
  /** The Content-Type the PUT must carry. */
  contentType: string;
}

/** A URL to PUT one object to, and the headers the PUT must send (they are part of the signature). */
export interface SignedPut {
  url: string;
  headers: Record<string, string>;
}

/** One part of a presigned multipart upload: PUT exactly `size` bytes to `url`, keep the answer's ETag. */
export interface SignedPart extends SignedPut {
  partNumber: number;
  size: number;
}

/**
 * Where entry bytes live: one bucket per workspace, objects keyed inside it. Two adapters implement
 * it and pass one contract suite (test/helpers/blob-store-contract.ts): `s3` (any S3-compatible store) and
 * `local` (files under DATA_DIR, with gateway-signed download URLs).
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
  /**
   * Streams `body` into a new object, measuring size and sha256 on the way, with memory bounded
   * whatever the size. On any failure (body error, maxBytes exceeded, store error) nothing is left
   * under `key` and the error is rethrown (BlobTooLargeError for maxBytes).
   */
  put(bucket: string, key: string, body: Readable, opts?: PutOptions): Promise<PutResult>;
  /** Streams an object or a byte range of it. @throws BlobNotFoundError, RangeNotSatisfiableError */
  get(bucket: string, key: string, range?: ByteRange): Promise<GetResult>;
  /** Size and type of an object, or null when there is none. */
  head(bucket: string, key: string): Promise<{ size: number; contentType: string | undefined } | null>;
  /** Removes one object; succeeds if it is already gone. */
  delete(bucket: string, key: string): Promise<void>;
  /** Removes many objects in batches (1000 per S3 request); missing ones are fine. */
  deleteMany(bucket: string, keys: readonly string[]): Promise<void>;
  /** Every object under `prefix`, in pages behind the iterator (reconciliation). */
  list(bucket: string, prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * Removes what uploads cut off by a crash left behind in `bucket`, never visible as objects but
   * still taking space: the local store's temporary files (under the bucket's `.tmp/`) last written
   * before `olderThan`, or S3 multipart uploads initiated before it, aborted. An upload still in
   * progress must not be swept, so callers pass a cutoff at least as old as the longest upload
   * allowed (UPLOAD_TEMP_MAX_AGE_MS); several replicas may sweep the same bucket at once.
   * A bucket that does not exist has nothing to sweep. An S3-compatible store that implements
   * neither ListMultipartUploads nor AbortMultipartUpload (s3rver) has nothing to sweep either:
   * that is logged at debug level, not thrown.
   */
  sweepIncompleteUploads(bucket: string, olderThan: Date): Promise<SweepResult>;
  /** A URL a plain HTTP client can GET until it expires: presigned (S3) or gateway-signed (local). */
  signedUrl(bucket: string, key: string, opts: SignedUrlOptions): Promise<string>;
  /**
   * A URL a plain HTTP client can PUT exactly `size` bytes of `contentType` to until it expires:
   * presigned (S3, with Content-Length and Content-Type signed) or gateway-signed (local).
   */
  signedPutUrl(bucket: string, key: string, opts: SignedPutOptions): Promise<SignedPut>;
  /**
   * S3 only: starts a multipart upload of `opts.size` bytes at `key` and presigns one PUT per part
   * of `partSize` bytes (the last one shorter). Nothing is visible until `completeMultipart`.
   */
  signedMultipart?(
    bucket: string,
    key: string,
    opts: SignedPutOptions & { partSize: number },
  ): Promise<{ uploadId: string; parts: SignedPart[] }>;
  /** S3 only: assembles the parts (their ETags as the PUTs answered them) into the object at `key`. */
  completeMultipart?(bucket: string, key: string, uploadId: string, parts: { partNumber: number; etag: string }[]): Promise<void>;
  /** S3 only: abandons a multipart upload and its parts; one already gone is fine. */
  abortMultipart?(bucket: string, key: string, uploadId: string): Promise<void>;
}

/** A body passed `maxBytes` (nothing of it is kept). */
export class BlobTooLargeError extends Error {
  constructor(readonly maxBytes: number) {
    super(`The body exceeds the limit of ${maxBytes} bytes`);
    this.name = 'BlobTooLargeError';
  }
}

/** The object does not exist. */
export class BlobNotFoundError extends Error {
  constructor(
    readonly bucket: string,
    readonly key: string,
  ) {
    super(`no object ${key} in ${bucket}`);
    this.name = 'BlobNotFoundError';
  }
}

/** The requested range starts past the end of the object. */
export class RangeNotSatisfiableError extends Error {
  constructor(readonly size: number) {
    super(`range not satisfiable for an object of ${size} bytes`);
    this.name = 'RangeNotSatisfiableError';
  }
}
