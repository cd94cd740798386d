import path from 'node:path';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import mime from 'mime-types';
import { v7 as uuidv7 } from 'uuid';
import type { Entry, Prisma } from '../../generated/prisma/client.js';
import { BlobTooLargeError } from '../../storage/blob-store.js';
import { requireWritable } from '../access/entry-access.js';
import type { Principal } from '../access/principal.js';
import { chargeUploadBytes, checkUploadAllowance } from '../access/rate-limits.js';
import { ConflictError, NotFoundError, PayloadTooLargeError, ValidationError } from '../shared/errors.js';
import { normaliseEntryPath } from '../shared/paths.js';
import type { Loc, VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { volumeObjectPrefix } from '../volumes/volumes.js';
import { afterWrite, bucketOf, commitEntry, describedBy, discardBlobs } from './commit.js';
import { openVolume } from './entries.js';
import { checkQuota, MAX_EXTRACTED_TEXT_BYTES, UploadFieldsInput, type WriteConditions, type WriterInfo } from './rules.js';

/** An incoming file: its bytes as a stream, and what the client said about it. */
export interface UploadedFile {
  stream: Readable;
  filename?: string | undefined;
  /** The part's declared type; `application/octet-stream` counts as not given. */
  mimeType?: string | undefined;
}

/** Keeps the first `limit` bytes that stream through (for sniffing and text extraction), passing all on. */
class HeadCapture extends Transform {
  private chunks: Buffer[] = [];
  private kept = 0;
  /** Bytes that passed, whatever happened next (counted against the key's upload budget). */
  bytesSeen = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytesSeen += chunk.length;
    if (this.kept < this.limit) {
      const part = chunk.subarray(0, this.limit - this.kept);
      this.chunks.push(Buffer.from(part));
      this.kept += part.length;
    }
    done(null, chunk);
  }
  head(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

const TEXT_TYPES = new Set([
  'application/json',
  'application/ld+json',
  'application/xml',
  'application/yaml',
  'application/x-yaml',
  'application/toml',
  'application/javascript',
  'application/x-ndjson',
  'application/csv',
  'application/sql',
  'image/svg+xml',
]);

/** Text-like types get their text extracted into content_text for indexing. */
export function isTextLike(mimeType: string): boolean {
  const base = mimeType.split(';')[0]?.trim().toLowerCase() ?? '';
  return base.startsWith('text/') || TEXT_TYPES.has(base) || base.endsWith('+json') || base.endsWith('+xml');
}

/** No NUL and valid UTF-8 in the first bytes: most likely text. */
function looksLikeText(head: Buffer): boolean {
  if (head.length === 0 || head.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(head.subarray(0, Math.max(0, head.length - 4)));
    return true;
  } catch {
    return false;
  }
}

/**
 * The media type of an upload: the client's word, else magic numbers (file-type), else the file
 * name's extension, else a text/binary guess from the first bytes.
 */
export async function sniffMimeType(declared: string | undefined, head: Buffer, name: string): Promise<string> {
  // Multipart parsers report a part without Content-Type as text/plain (RFC 7578's default), so
  // text/plain is no statement either: a binary file sent without a type must not become text.
  if (declared && declared !== 'application/octet-stream' && declared !== 'text/plain') return declared;
  const magic = await fileTypeFromBuffer(head).catch(() => undefined);
  if (magic) return magic.mime;
  const byName = mime.lookup(name);
  if (byName) return byName;
  return looksLikeText(head) ? 'text/plain' : 'application/octet-stream';
}

/** Text kept for indexing: valid UTF-8 (replacement characters otherwise), no NUL, capped. */
export function extractText(head: Buffer, truncated: boolean): string {
  // When the cap cut the file, a character split at the cut is dropped (stream mode holds it back)
  // rather than turned into a replacement character that would also exceed the cap.
  return new TextDecoder('utf-8').decode(head, { stream: truncated }).replaceAll('\u0000', '');
}

/**
 * Streams an uploaded file into the workspace bucket and commits its entry. The bytes go straight to
 * the blob store (memory stays flat whatever the size) while size and sha256 are measured; the row
 * is written only after the object is complete, and the object is removed again if the row cannot
 * be (quota, precondition, crash of the transaction), so a failed upload leaves neither.
 * @throws ValidationError, NotFoundError, ForbiddenError, ConflictError, QuotaExceededError, PayloadTooLargeError
 */
export async function uploadEntry(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  rawPath: string,
  file: UploadedFile,
  /** The other form fields; a promise when they may arrive after the file (multipart order). */
  rawFields: unknown | Promise<unknown>,
  opts: WriteConditions & WriterInfo = {},
  loc: { path: Loc; body: Loc } = { path: ['path', 'path'], body: ['body'] },
): Promise<{ entry: Entry; created: boolean }> {
  const { volume, access } = await openVolume(rt, p, route, 'write');
  const entryPath = normaliseEntryPath(rawPath, loc.path);
  requireWritable(access, entryPath);
  const ws = await rt.db.workspace.findUnique({ where: { id: route.workspaceId }, select: { bucketStatus: true, s3Bucket: true } });
  if (!ws) throw new NotFoundError('workspace', route.workspaceId);
  if (ws.bucketStatus !== 'active') {
    throw new ConflictError(`The workspace's bucket is ${ws.bucketStatus}; uploads are possible once it is active`, {
      bucket_status: ws.bucketStatus,
    });
  }
  // Refuse before streaming when the volume is already full; the exact check runs at commit.
  checkQuota(
    { max_size_bytes: volume.maxSizeBytes, max_file_count: null, used_bytes: volume.usedBytes, entry_count: volume.entryCount },
    1n,
    0,
  );

  await checkUploadAllowance(rt, p);

  const key = `${volumeObjectPrefix(route.volumeId)}objects/${uuidv7()}`;
  const capture = new HeadCapture(MAX_EXTRACTED_TEXT_BYTES);
  // .pipe() forwards data but not errors or destruction: wire both ways by hand.
  file.stream.on('error', (err) => capture.destroy(err));
  let stored: { size: number; sha256: string };
  try {
    stored = await rt.blobs.put(ws.s3Bucket, key, file.stream.pipe(capture), {
      maxBytes: rt.settings.maxUploadBytes,
      ...(file.mimeType ? { contentType: file.mimeType } : {}),
    });
  } catch (err) {
    file.stream.destroy();
    await chargeUploadBytes(rt, p, capture.bytesSeen);
    if (err instanceof BlobTooLargeError) {
      throw new PayloadTooLargeError(`The upload exceeds the limit of ${err.maxBytes} bytes`, { max_bytes: err.maxBytes });
    }
    throw err;
  }

  await chargeUploadBytes(rt, p, stored.size);

  try {
    const fields = parseInput(UploadFieldsInput, (await rawFields) ?? {}, loc.body);
    const head = capture.head();
    const mimeType =
      fields.mime_type ?? (await sniffMimeType(file.mimeType, head.subarray(0, 4100), file.filename || path.posix.basename(entryPath)));
    const result = await commitEntry(
      rt,
      route.volumeId,
      entryPath,
      {
        contentType: 'file',
        content: { filename: file.filename ?? path.posix.basename(entryPath) } as Prisma.InputJsonValue,
        contentText: isTextLike(mimeType) ? extractText(head, stored.size > head.length) : null,
        mimeType,
        sizeBytes: BigInt(stored.size),
        blobKey: key,
        sha256: stored.sha256,
        ...describedBy(p, fields, opts),
      },
      opts,
    );
    await afterWrite(rt, route, result);
    return { entry: result.entry, created: result.created };
  } catch (err) {
    await discardBlobs(rt, ws.s3Bucket, [key]);
    throw err;
  }
}

export const MIN_EXPIRES_IN = 60;
export const MAX_EXPIRES_IN = 604_800;
export const DEFAULT_EXPIRES_IN = 3600;

/**
 * A URL a plain HTTP client can download a file entry from, valid for `expiresIn` seconds. The
 * caller has read the entry (getEntry), which is where access was checked.
 * @throws ValidationError (not a file entry, expiry out of range), NotFoundError, ForbiddenError
 */
export async function downloadUrl(
  rt: Runtime,
  route: VolumeRoute,
  entry: Pick<Entry, 'path' | 'contentType' | 'blobKey' | 'mimeType' | 'content'>,
  expiresIn: number,
  loc: Loc = ['query', 'expires_in'],
): Promise<string> {
  if (!Number.isInteger(expiresIn) || expiresIn < MIN_EXPIRES_IN || expiresIn > MAX_EXPIRES_IN) {
    throw ValidationError.field(loc, `expires_in must be an integer from ${MIN_EXPIRES_IN} to ${MAX_EXPIRES_IN}`, expiresIn, 'range');
  }
  if (entry.contentType !== 'file' || !entry.blobKey) {
    throw new ConflictError(`Entry ${entry.path} is ${entry.contentType} content, not a file: read it with GET`, {
      path: entry.path,
      content_type: entry.contentType,
    });
  }
  const filename = (entry.content as { filename?: string } | null)?.filename ?? path.posix.basename(entry.path);
  return rt.blobs.signedUrl(await bucketOf(rt, route.workspaceId), entry.blobKey, {
    expiresIn,
    filename,
    ...(entry.mimeType ? { contentType: entry.mimeType } : {}),
  });
}
