/**
 * Upload sessions: files that reach a volume in more than one request, either resumably (tus 1.0:
 * bytes PATCHed through the gateway into rt.resumable, any number of times) or directly (a signed
 * URL the client PUTs the bytes to; on S3 they never pass through the gateway). A session holds a
 * reservation on the volume (reserved_bytes, and reserved_files when its path has no entry yet;
 * every write's quota check counts both) until it ends,
 * and the entry appears only when the last byte has landed, through the same commit as a one-shot
 * upload (commitEntry: quotas, locks and fencing, versions, sha256, indexing, entryChanged).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Upload } from '@tus/server';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { Prisma, UploadSession } from '../../generated/prisma/client.js';
import type { SignedPart } from '../../storage/blob-store.js';
import { requireWritable } from '../access/entry-access.js';
import type { Principal } from '../access/principal.js';
import { chargeUploadBytes, checkUploadAllowance } from '../access/rate-limits.js';
import { ConflictError, NotFoundError, PayloadTooLargeError, QuotaExceededError, ValidationError } from '../shared/errors.js';
import type { UploadProgressEvent } from '../shared/events.js';
import { liveEntries } from '../shared/live-entries.js';
import { normaliseEntryPath } from '../shared/paths.js';
import type { Loc, VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { watchUntilTerminal } from '../shared/watch.js';
import { volumeObjectPrefix } from '../volumes/volumes.js';
import { afterWrite, commitEntry, discardBlobs, lockVolume } from './commit.js';
import { openVolume } from './entries.js';
import {
  checkPreconditions,
  checkQuota,
  MAX_EXTRACTED_TEXT_BYTES,
  UploadFieldsInput,
  type WriteConditions,
  type WriterInfo,
} from './rules.js';
import { gatewayUploadLocker, holdingUploadLock } from './upload-locks.js';
import { extractText, isTextLike, sniffMimeType } from './uploads.js';

export type UploadProtocol = 'tus' | 'signed_url';

/** S3's limit for one PutObject (and one part). */
const MAX_SINGLE_PUT_BYTES = 5 * 1024 ** 3;
/** S3's smallest part (but the last). */
const MIN_PART_BYTES = 5 * 1024 ** 2;
/** Parts of a default multipart set (above MAX_SINGLE_PUT_BYTES). */
const DEFAULT_PART_BYTES = 64 * 1024 ** 2;
/** S3's most parts per upload. */
const MAX_PARTS = 10_000;

/** What a new upload states (REST body, GraphQL input, or tus Upload-Metadata mapped by `fromTusMetadata`). */
export const NewUploadInput = UploadFieldsInput.extend({
  path: z.string().describe('The entry path the upload commits'),
  size_bytes: z
    .number()
    .int()
    .min(0)
    .nullable()
    .optional()
    .describe('The file size in bytes; required for signed URLs, null for a tus upload that defers its length'),
  filename: z.string().trim().min(1).max(255).optional().describe('Kept as the entry content filename; default the path basename'),
  sha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'a hex sha256')
    .optional()
    .describe('Hex sha256 of the file: checked against the stored bytes before the entry is committed'),
  expected_version: z.number().int().min(1).optional().describe('Commit only over this version of the entry (If-Match)'),
  create_only: z.boolean().optional().describe('Commit only if no live entry exists at the path (If-None-Match: *)'),
  expires_in: z.number().int().min(60).max(604_800).optional().describe('Seconds a signed upload URL stays valid (default 3600)'),
  part_size_bytes: z
    .number()
    .int()
    .min(MIN_PART_BYTES)
    .max(MAX_SINGLE_PUT_BYTES)
    .optional()
    .describe(
      'S3: send the file as a presigned multipart upload in parts of this size (default: one PUT up to 5 GiB, 64 MiB parts above). The local store always answers one part.',
    ),
});
export type NewUploadInput = z.input<typeof NewUploadInput>;

/** The write fields a session keeps until it commits. */
interface SessionFields {
  tags: string[];
  metadata: Record<string, unknown>;
  ttl_seconds: number | null;
  schema_id: string | null;
  execution_id: string | null;
  if_match: number | '*' | null;
  if_none_match: boolean;
  lock_id: string | null;
  fencing: { partition: string; token: number } | null;
  /** A signed-URL upload sent as an S3 multipart upload: its id (completion assembles the parts). */
  multipart_upload_id?: string | null;
}

const TUS_KEYS: Record<string, string> = {
  path: 'path',
  filename: 'filename',
  name: 'filename',
  filetype: 'mime_type',
  type: 'mime_type',
  mime_type: 'mime_type',
  tags: 'tags',
  metadata: 'metadata',
  ttl_seconds: 'ttl_seconds',
  schema_id: 'schema_id',
  execution_id: 'execution_id',
  expected_version: 'expected_version',
  if_match: 'expected_version',
  create_only: 'create_only',
  sha256: 'sha256',
};

/**
 * tus Upload-Metadata (string values) as NewUploadInput: `path` (required), `filename`/`filetype`
 * as tus-js-client and Uppy send them, `tags` (comma-separated or a JSON array), `metadata` (JSON
 * object), `ttl_seconds`, `expected_version` (or `if_match`, e.g. `"3"`), `create_only` (`true`).
 * Other keys are ignored (Uppy sends `relativePath` and the like). Errors name the key at
 * `["header", "upload-metadata", key]`.
 */
export function fromTusMetadata(meta: Record<string, string | null | undefined>, sizeBytes: number | null): Record<string, unknown> {
  const loc = (key: string) => ['header', 'upload-metadata', key];
  const out: Record<string, unknown> = { size_bytes: sizeBytes };
  for (const [key, value] of Object.entries(meta)) {
    const field = TUS_KEYS[key];
    if (!field || value === null || value === undefined) continue;
    switch (field) {
      case 'tags':
        if (value.trim().startsWith('[')) out.tags = parseJson(value, loc(key));
        else
          out.tags = value
            .split(',')
            .map((t) => t.trim())
            .filter(Boolean);
        break;
      case 'metadata':
        out.metadata = parseJson(value, loc(key));
        break;
      case 'ttl_seconds':
      case 'expected_version':
        if (!/^(W\/)?"?\d{1,12}"?$/.test(value.trim()))
          throw ValidationError.field(loc(key), `${key} must be a whole number`, value, 'int_parsing');
        out[field] = Number(value.replace(/\D/g, ''));
        break;
      case 'create_only':
        if (!['true', 'false', '1', '0', ''].includes(value))
          throw ValidationError.field(loc(key), 'create_only must be true or false', value);
        out.create_only = value === 'true' || value === '1' || value === '';
        break;
      case 'mime_type':
        // tus-js-client sends the browser's empty type for unknown files; no statement then.
        if (value !== '' && value !== 'application/octet-stream') out.mime_type = value;
        break;
      default:
        out[field] = value;
    }
  }
  if (typeof out.path !== 'string')
    throw ValidationError.field(loc('path'), 'Upload-Metadata must carry the entry path (key "path")', null, 'missing');
  return out;
}

/**
 * A validation error of tus metadata mapped by `fromTusMetadata`, with each field named by the
 * metadata key the client sent (`filetype`, not `mime_type`).
 */
export function renameTusFields(err: ValidationError, meta: Record<string, unknown>): ValidationError {
  const keyOf: Record<string, string> = {};
  for (const key of Object.keys(meta)) {
    const field = TUS_KEYS[key];
    if (field) keyOf[field] ??= key;
  }
  return new ValidationError(
    err.issues.map((i) =>
      i.loc[0] === 'header' && i.loc[1] === 'upload-metadata' && typeof i.loc[2] === 'string' && keyOf[i.loc[2]]
        ? { ...i, loc: ['header', 'upload-metadata', keyOf[i.loc[2]] as string, ...i.loc.slice(3)] }
        : i,
    ),
  );
}

function parseJson(value: string, loc: Loc): unknown {
  try {
    return JSON.parse(value);
  } catch {
    throw ValidationError.field(loc, 'must be JSON', value, 'json_invalid');
  }
}

/** Where an input field is reported: tus metadata keys by their own name. */
export interface UploadLocs {
  path: Loc;
  body: Loc;
}

/** Where a signed-URL upload's bytes go: one PUT (`url`), or one PUT per part (S3 multipart; `url` null). */
export interface SignedUpload {
  url: string | null;
  headers: Record<string, string>;
  parts: SignedPart[];
  expiresAt: Date;
}

/** A session as the transports show it. */
export interface UploadView {
  session: UploadSession;
  /** Bytes stored so far (tus: the store's offset; signed URL: 0 until completed). */
  bytesReceived: number;
}

const DEFAULT_URL_EXPIRES_IN = 3600;

async function activeBucket(rt: Runtime, workspaceId: string): Promise<string> {
  const ws = await rt.db.workspace.findUnique({ where: { id: workspaceId }, select: { bucketStatus: true, s3Bucket: true } });
  if (!ws) throw new NotFoundError('workspace', workspaceId);
  if (ws.bucketStatus !== 'active') {
    throw new ConflictError(`The workspace's bucket is ${ws.bucketStatus}; uploads are possible once it is active`, {
      bucket_status: ws.bucketStatus,
    });
  }
  return ws.s3Bucket;
}

/**
 * Opens an upload session: checks the path, access (a write mount on it for app keys), the size
 * limit, the preconditions as they stand now, and reserves the declared size on the volume (507
 * when the volume cannot hold it next to what it holds and what other uploads reserved). A tus
 * session gets its (empty) upload in the store; a signed-URL session its PUT URL.
 * @throws ValidationError, NotFoundError, ForbiddenError, ConflictError, QuotaExceededError, PayloadTooLargeError
 */
export async function createUploadSession(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  protocol: UploadProtocol,
  raw: unknown,
  opts: WriteConditions & WriterInfo = {},
  loc: UploadLocs = { path: ['body', 'path'], body: ['body'] },
): Promise<{ view: UploadView; put?: SignedUpload }> {
  const { volume, access } = await openVolume(rt, p, route, 'write');
  const input = parseInput(NewUploadInput, raw, loc.body);
  const entryPath = normaliseEntryPath(input.path, loc.path);
  requireWritable(access, entryPath);
  const size = input.size_bytes ?? null;
  if (size === null && protocol === 'signed_url') {
    throw ValidationError.field([...loc.body, 'size_bytes'], 'size_bytes is required for a signed upload URL', null, 'missing');
  }
  // S3: a presigned multipart set when asked for, or when one PUT could not carry the file.
  const multipart = protocol === 'signed_url' && rt.blobs.signedMultipart !== undefined && size !== null;
  const partSize = multipart
    ? (input.part_size_bytes ?? (size > MAX_SINGLE_PUT_BYTES ? Math.max(DEFAULT_PART_BYTES, Math.ceil(size / MAX_PARTS)) : undefined))
    : undefined;
  if (partSize !== undefined && size !== null && Math.ceil(size / partSize) > MAX_PARTS) {
    throw ValidationError.field(
      [...loc.body, 'part_size_bytes'],
      `at most ${MAX_PARTS} parts: use larger parts`,
      partSize,
      'too_many_parts',
    );
  }
  if (protocol === 'signed_url' && partSize === undefined && size !== null && size > MAX_SINGLE_PUT_BYTES && rt.blobs.kind === 's3') {
    throw ValidationError.field(
      [...loc.body, 'size_bytes'],
      `one signed PUT takes at most ${MAX_SINGLE_PUT_BYTES} bytes`,
      size,
      'less_than_equal',
    );
  }
  if (size !== null && size > rt.settings.maxUploadBytes) {
    throw new PayloadTooLargeError(`The upload exceeds the limit of ${rt.settings.maxUploadBytes} bytes`, {
      max_bytes: rt.settings.maxUploadBytes,
      field: 'size_bytes',
    });
  }
  const pre: WriteConditions = {
    ...opts,
    ...(input.expected_version !== undefined ? { ifMatch: input.expected_version } : {}),
    ...(input.create_only ? { ifNoneMatch: true } : {}),
  };
  // Fail early on a precondition that already fails; the commit checks again, authoritatively.
  const current = await rt.db.entry.findFirst({
    where: { ...liveEntries(route.volumeId), path: entryPath },
    select: { version: true, sizeBytes: true },
  });
  checkPreconditions(current, pre, entryPath);
  const bucket = await activeBucket(rt, route.workspaceId);
  await checkUploadAllowance(rt, p);

  const id = uuidv7();
  const prefix = volumeObjectPrefix(route.volumeId);
  const storageId = protocol === 'tus' ? rt.resumable.uploadId(prefix, id) : `${prefix}objects/${id}`;
  const mimeType = input.mime_type ?? null;
  const fields: SessionFields = {
    tags: input.tags ?? [],
    metadata: (input.metadata ?? {}) as Record<string, unknown>,
    ttl_seconds: input.ttl_seconds ?? null,
    schema_id: input.schema_id ?? null,
    execution_id: opts.executionId ?? input.execution_id ?? null,
    if_match: pre.ifMatch ?? null,
    if_none_match: pre.ifNoneMatch ?? false,
    lock_id: pre.lockId ?? null,
    fencing: pre.fencing ?? null,
  };
  const expiresAt = new Date(Date.now() + rt.settings.uploadSessionTtlMs);
  // What the commit will add: the new size less the entry it replaces (the commit itself is exact).
  const reserved = size === null ? 0n : BigInt(size) > (current?.sizeBytes ?? 0n) ? BigInt(size) - (current?.sizeBytes ?? 0n) : 0n;
  // A path with no entry yet: the commit will add a file, held against max_file_count meanwhile.
  const reservedFiles = current ? 0 : 1;
  const session = await rt.db.$transaction(async (tx) => {
    const usage = await lockVolume(tx, route.volumeId);
    checkQuota(usage, reserved, reservedFiles);
    if (reserved > 0n || reservedFiles > 0) {
      await tx.$executeRaw`
        UPDATE volumes SET reserved_bytes = reserved_bytes + ${reserved}, reserved_files = reserved_files + ${reservedFiles}
        WHERE id = ${route.volumeId}`;
    }
    return tx.uploadSession.create({
      data: {
        id,
        volumeId: route.volumeId,
        workspaceId: route.workspaceId,
        orgId: volume.orgId,
        protocol,
        path: entryPath,
        storageId,
        sizeBytes: size === null ? null : BigInt(size),
        reservedBytes: reserved,
        reservedFiles,
        mimeType,
        filename: input.filename ?? null,
        expectedSha256: input.sha256?.toLowerCase() ?? null,
        fields: fields as unknown as Prisma.InputJsonValue,
        createdBy: p.kind === 'key' ? `key:${p.keyId}` : 'admin',
        appId: p.kind === 'key' ? p.appId : null,
        expiresAt,
      },
    });
  });

  try {
    if (protocol === 'tus') {
      await rt.resumable.dataStore(bucket).create(
        new Upload({
          id: storageId,
          offset: 0,
          ...(size !== null ? { size } : {}),
          metadata: { path: entryPath, ...(mimeType ? { filetype: mimeType } : {}) },
          creation_date: session.createdAt.toISOString(),
        }),
      );
      if (size === 0) {
        // No PATCH will ever come for an empty file (tus clients finish at creation): its one
        // empty write completes the store's upload, and the entry is committed now.
        await rt.resumable.dataStore(bucket).write(Readable.from([]), storageId, 0);
        return { view: await completeUploadSession(rt, session) };
      }
      return { view: { session, bytesReceived: 0 } };
    }
    const expiresIn = Math.min(input.expires_in ?? DEFAULT_URL_EXPIRES_IN, Math.floor(rt.settings.uploadSessionTtlMs / 1000));
    const expiresAt = new Date(Date.now() + expiresIn * 1000);
    const contentType = mimeType ?? 'application/octet-stream';
    if (partSize !== undefined && rt.blobs.signedMultipart) {
      const mp = await rt.blobs.signedMultipart(bucket, storageId, { expiresIn, size: size ?? 0, contentType, partSize });
      const updated = await rt.db.uploadSession.update({
        where: { id },
        data: { fields: { ...fields, multipart_upload_id: mp.uploadId } as unknown as Prisma.InputJsonValue },
      });
      const only = mp.parts.length === 1 ? mp.parts[0] : undefined;
      return {
        view: { session: updated, bytesReceived: 0 },
        put: { url: only?.url ?? null, headers: only?.headers ?? {}, parts: mp.parts, expiresAt },
      };
    }
    const put = await rt.blobs.signedPutUrl(bucket, storageId, { expiresIn, size: size ?? 0, contentType });
    return {
      view: { session, bytesReceived: 0 },
      put: { ...put, parts: [{ partNumber: 1, size: size ?? 0, ...put }], expiresAt },
    };
  } catch (err) {
    await endSession(rt, session, 'failed', { reason: 'store_error' });
    throw err;
  }
}

/**
 * A session of this volume that the principal may still write to: its path must be writable by
 * the principal now (an app key outside the mount gets 404 or 403, as for the entry itself).
 * @throws NotFoundError (unknown, another volume, or not readable), ForbiddenError
 */
export async function openUploadSession(rt: Runtime, p: Principal, route: VolumeRoute, uploadId: string): Promise<UploadSession> {
  const { access } = await openVolume(rt, p, route, 'write');
  const session = /^[0-9a-f-]{36}$/.test(uploadId)
    ? await rt.db.uploadSession.findFirst({ where: { id: uploadId, volumeId: route.volumeId } })
    : null;
  if (!session) throw new NotFoundError('upload', uploadId);
  try {
    requireWritable(access, session.path);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError('upload', uploadId);
    throw err;
  }
  return session;
}

/** True once the session can take no more bytes (ended, or past its expiry). */
export function sessionClosed(s: UploadSession, now = new Date()): boolean {
  return s.status !== 'uploading' || s.expiresAt <= now;
}

/** A session that is still taking bytes. @throws NotFoundError when it has ended or expired */
export function requireOpen(s: UploadSession): void {
  if (sessionClosed(s)) throw new NotFoundError('upload', s.id);
}

/** How far a session got, for status answers. */
export async function viewSession(rt: Runtime, session: UploadSession): Promise<UploadView> {
  if (session.status === 'completed') return { session, bytesReceived: Number(session.sizeBytes ?? session.bytesReceived) };
  if (session.protocol === 'tus' && session.status === 'uploading') {
    const bucket = await bucketOfSession(rt, session);
    const upload = await rt.resumable
      .dataStore(bucket)
      .getUpload(session.storageId)
      .catch(() => null);
    return { session, bytesReceived: upload?.offset ?? Number(session.bytesReceived) };
  }
  return { session, bytesReceived: Number(session.bytesReceived) };
}

async function bucketOfSession(rt: Runtime, s: UploadSession): Promise<string> {
  const ws = await rt.db.workspace.findUnique({ where: { id: s.workspaceId }, select: { s3Bucket: true } });
  if (!ws) throw new NotFoundError('workspace', s.workspaceId);
  return ws.s3Bucket;
}

/**
 * Before a tus PATCH adds `incoming` bytes at `offset`: the session must be open and its
 * reservation must cover them. A deferred-length upload grows its reservation as bytes come; when
 * the volume cannot hold them, the upload ends (its parts removed, its reservation freed) with 507.
 * @throws NotFoundError (ended or expired), QuotaExceededError, PayloadTooLargeError
 */
export async function admitBytes(rt: Runtime, session: UploadSession, offset: number, incoming: number): Promise<void> {
  requireOpen(session);
  // A declared length was reserved (less what the entry it replaces holds) at creation.
  if (session.sizeBytes !== null) return;
  const needed = BigInt(offset + incoming);
  if (needed > BigInt(rt.settings.maxUploadBytes)) {
    await endSession(rt, session, 'failed', { reason: 'too_large' });
    throw new PayloadTooLargeError(`The upload exceeds the limit of ${rt.settings.maxUploadBytes} bytes`, {
      max_bytes: rt.settings.maxUploadBytes,
      field: 'Upload-Length',
    });
  }
  if (needed <= session.reservedBytes) return;
  const grow = needed - session.reservedBytes;
  // The session row first, then the volume's (the order endSession takes them in).
  const granted = await rt.db
    .$transaction(async (tx) => {
      const moved = await tx.$executeRaw`
        UPDATE upload_sessions SET reserved_bytes = reserved_bytes + ${grow}, updated_at = now()
        WHERE id = ${session.id} AND status = 'uploading'`;
      if (moved !== 1) throw new NotFoundError('upload', session.id);
      const held = await tx.$executeRaw`
        UPDATE volumes SET reserved_bytes = reserved_bytes + ${grow}
        WHERE id = ${session.volumeId} AND deleted_at IS NULL
          AND (max_size_bytes IS NULL OR used_bytes + reserved_bytes + ${grow} <= max_size_bytes)`;
      if (held !== 1) throw new NoRoom();
      return true;
    })
    .catch((err: unknown) => {
      if (err instanceof NoRoom) return false;
      throw err;
    });
  if (granted) {
    session.reservedBytes += grow;
    return;
  }
  const volume = await rt.db.volume.findUnique({
    where: { id: session.volumeId },
    select: { maxSizeBytes: true, usedBytes: true, reservedBytes: true },
  });
  await endSession(rt, session, 'failed', { reason: 'quota_exceeded', quota: 'max_size_bytes' });
  throw new QuotaExceededError(`Volume quota max_size_bytes (${volume?.maxSizeBytes}) would be exceeded by this upload`, {
    quota: 'max_size_bytes',
    limit: volume?.maxSizeBytes === null || volume === null ? null : Number(volume.maxSizeBytes),
    used: volume ? Number(volume.usedBytes + volume.reservedBytes - session.reservedBytes) : null,
    requested: Number(needed),
    upload_id: session.id,
  });
}

/** The volume cannot hold more reserved bytes (rolls the reservation's transaction back). */
class NoRoom extends Error {}

/** Bytes landed (tus progress): recorded now and then, and told to uploadProgress subscribers. */
export async function noteProgress(
  rt: Runtime,
  session: UploadSession,
  bytesReceived: number,
  chargedFrom?: number,
  p?: Principal,
): Promise<void> {
  if (p && chargedFrom !== undefined && bytesReceived > chargedFrom) await chargeUploadBytes(rt, p, bytesReceived - chargedFrom);
  await rt.db.uploadSession
    .updateMany({ where: { id: session.id, status: 'uploading' }, data: { bytesReceived: BigInt(bytesReceived) } })
    .catch((err) => rt.log.warn({ err, uploadId: session.id }, 'could not record upload progress'));
  publishProgress(rt, { ...session, bytesReceived: BigInt(bytesReceived) });
}

function publishProgress(rt: Runtime, s: UploadSession): void {
  const event: UploadProgressEvent = {
    uploadId: s.id,
    volumeId: s.volumeId,
    status: s.status,
    bytesReceived: Number(s.bytesReceived),
    sizeBytes: s.sizeBytes === null ? null : Number(s.sizeBytes),
    entryId: s.entryId,
    entryVersion: s.entryVersion,
  };
  rt.events.publish('uploadProgress', s.id, event);
}

/**
 * Ends a session that will commit nothing: frees its reservation (once: only the call that moves it
 * out of `uploading`/`completing` does), removes its bytes and tells subscribers.
 */
async function endSession(
  rt: Runtime,
  session: UploadSession,
  status: 'failed' | 'aborted' | 'expired',
  error: Record<string, unknown> | null,
  from: ('uploading' | 'completing')[] = ['uploading'],
): Promise<boolean> {
  const ended = await rt.db.$transaction(async (tx) => {
    const rows = await tx.uploadSession.updateManyAndReturn({
      where: { id: session.id, status: { in: from } },
      data: { status, reservedBytes: 0n, reservedFiles: 0, ...(error ? { error: error as Prisma.InputJsonValue } : {}) },
    });
    const row = rows[0];
    if (!row) return null;
    if (session.reservedBytes > 0n || session.reservedFiles > 0) {
      await tx.$executeRaw`
        UPDATE volumes SET reserved_bytes = GREATEST(reserved_bytes - ${session.reservedBytes}, 0),
          reserved_files = GREATEST(reserved_files - ${session.reservedFiles}, 0)
        WHERE id = ${session.volumeId}`;
    }
    return row;
  });
  if (!ended) return false;
  Object.assign(session, { status, reservedBytes: 0n, reservedFiles: 0 });
  try {
    const bucket = await bucketOfSession(rt, session);
    if (session.protocol === 'tus') await rt.resumable.discard(bucket, session.storageId);
    else {
      const uploadId = (session.fields as unknown as SessionFields).multipart_upload_id;
      if (uploadId) await rt.blobs.abortMultipart?.(bucket, session.storageId, uploadId);
      await discardBlobs(rt, bucket, [session.storageId]);
    }
  } catch (err) {
    rt.log.warn({ err, uploadId: session.id }, 'could not remove the bytes of an ended upload; the sweep retries');
  }
  publishProgress(rt, ended);
  return true;
}

/**
 * Commits a session whose bytes are all stored: measures them (size and sha256; for a signed URL
 * against what the client declared), then writes the entry through the one commit every upload
 * uses, releasing the reservation in its transaction. Completing a completed session answers its
 * entry again; a failed commit ends the session (nothing is left: no entry, no object).
 * @throws NotFoundError, ConflictError (preconditions, locks, size or checksum mismatch), QuotaExceededError, LockedError
 */
export async function completeUploadSession(
  rt: Runtime,
  session: UploadSession,
  opts: { parts?: { partNumber: number; etag: string }[] | undefined; partsLoc?: Loc } = {},
): Promise<UploadView> {
  if (session.status === 'completed') return { session, bytesReceived: Number(session.sizeBytes ?? 0n) };
  requireOpen(session);
  await assembleParts(rt, session, opts.parts, opts.partsLoc ?? ['body', 'parts']);
  // Bytes still to come are no failure: the session stays open (the client may finish and retry).
  await requireAllBytes(rt, session);
  const claimed = await rt.db.uploadSession.updateMany({ where: { id: session.id, status: 'uploading' }, data: { status: 'completing' } });
  if (claimed.count !== 1) {
    const now = await rt.db.uploadSession.findUnique({ where: { id: session.id } });
    if (now?.status === 'completed') return { session: now, bytesReceived: Number(now.sizeBytes ?? 0n) };
    throw new ConflictError(`Upload ${session.id} is ${now?.status ?? 'gone'}`, { upload_id: session.id, status: now?.status ?? null });
  }
  session.status = 'completing';
  const bucket = await bucketOfSession(rt, session);
  const fields = session.fields as unknown as SessionFields;
  let stored: { key: string; size: number; sha256: string; head: Buffer };
  try {
    stored = await measureSession(rt, bucket, session);
  } catch (err) {
    await endSession(rt, session, 'failed', { reason: err instanceof ConflictError ? String(err.details.reason) : 'store_error' }, [
      'completing',
    ]);
    throw err;
  }
  const name = session.filename ?? path.posix.basename(session.path);
  try {
    const mimeType = session.mimeType ?? (await sniffMimeType(undefined, stored.head.subarray(0, 4100), name));
    const pre: WriteConditions = {
      ...(fields.if_match !== null ? { ifMatch: fields.if_match } : {}),
      ...(fields.if_none_match ? { ifNoneMatch: true } : {}),
      ...(fields.lock_id ? { lockId: fields.lock_id } : {}),
      ...(fields.fencing ? { fencing: fields.fencing } : {}),
    };
    const result = await commitEntry(
      rt,
      session.volumeId,
      session.path,
      {
        contentType: 'file',
        content: { filename: name } as Prisma.InputJsonValue,
        contentText: isTextLike(mimeType) ? extractText(stored.head, stored.size > stored.head.length) : null,
        mimeType,
        sizeBytes: BigInt(stored.size),
        blobKey: stored.key,
        sha256: stored.sha256,
        schemaId: fields.schema_id,
        ttlSeconds: fields.ttl_seconds,
        tags: fields.tags,
        metadata: fields.metadata as Prisma.InputJsonValue,
        writtenByAppId: session.appId,
        writtenByExecutionId: fields.execution_id,
      },
      pre,
      {
        releaseReserved: { bytes: session.reservedBytes, files: session.reservedFiles },
        inTransaction: async (tx, entry) => {
          await tx.uploadSession.update({
            where: { id: session.id },
            data: {
              status: 'completed',
              reservedBytes: 0n,
              reservedFiles: 0,
              bytesReceived: BigInt(stored.size),
              sizeBytes: BigInt(stored.size),
              entryId: entry.id,
              entryVersion: entry.version,
              completedAt: new Date(),
            },
          });
        },
      },
    );
    await afterWrite(rt, { orgId: session.orgId, workspaceId: session.workspaceId, volumeId: session.volumeId }, result);
    const done = await rt.db.uploadSession.findUniqueOrThrow({ where: { id: session.id } });
    publishProgress(rt, done);
    return { session: done, bytesReceived: stored.size };
  } catch (err) {
    // The commit rolled back: the object is nobody's; the reservation is released by ending the session.
    await discardBlobs(rt, bucket, [stored.key]);
    const reason = err instanceof QuotaExceededError ? 'quota_exceeded' : err instanceof ConflictError ? 'conflict' : 'commit_failed';
    await endSession(rt, session, 'failed', { reason, message: (err as Error).message }, ['completing']);
    throw err;
  }
}

/**
 * A multipart signed-URL upload: its parts (numbers and the ETags their PUTs answered) become the
 * object. Refusals leave the session open, so the client may send the missing parts and retry.
 * @throws ValidationError (parts missing), ConflictError (`parts_invalid`)
 */
async function assembleParts(
  rt: Runtime,
  s: UploadSession,
  parts: { partNumber: number; etag: string }[] | undefined,
  loc: Loc,
): Promise<void> {
  const uploadId = (s.fields as unknown as SessionFields).multipart_upload_id;
  if (s.protocol !== 'signed_url' || !uploadId || !rt.blobs.completeMultipart) return;
  const bucket = await bucketOfSession(rt, s);
  if (await rt.blobs.head(bucket, s.storageId)) return; // assembled by an earlier call
  if (!parts || parts.length === 0) {
    throw ValidationError.field(
      loc,
      'the parts (part_number and the etag each PUT answered) are required to complete a multipart upload',
      null,
      'missing',
    );
  }
  try {
    await rt.blobs.completeMultipart(bucket, s.storageId, uploadId, parts);
  } catch (err) {
    rt.log.info({ err, uploadId: s.id }, 'multipart completion refused');
    throw new ConflictError('The store refused the parts: check that every part was uploaded and its etag', {
      reason: 'parts_invalid',
      field: 'parts',
      upload_id: s.id,
    });
  }
}

/** @throws ConflictError (`incomplete` or `object_missing`, naming the field) while bytes are still to come */
async function requireAllBytes(rt: Runtime, s: UploadSession): Promise<void> {
  const bucket = await bucketOfSession(rt, s);
  if (s.protocol === 'tus') {
    const upload = await rt.resumable.dataStore(bucket).getUpload(s.storageId);
    if (upload.size === undefined || upload.offset !== upload.size) {
      throw new ConflictError(`Upload ${s.id} has ${upload.offset} of ${upload.size ?? '?'} bytes`, {
        reason: 'incomplete',
        field: 'Upload-Offset',
        upload_id: s.id,
        bytes_received: upload.offset,
      });
    }
  } else if (!(await rt.blobs.head(bucket, s.storageId))) {
    throw new ConflictError(`Nothing was uploaded for upload ${s.id} yet: PUT the file to its upload URL first`, {
      reason: 'object_missing',
      field: 'upload_url',
      upload_id: s.id,
    });
  }
}

/** The session's bytes as an object, measured; a signed-URL upload checked against its declaration. */
async function measureSession(
  rt: Runtime,
  bucket: string,
  s: UploadSession,
): Promise<{ key: string; size: number; sha256: string; head: Buffer }> {
  if (s.protocol === 'tus') {
    const upload = await rt.resumable.dataStore(bucket).getUpload(s.storageId);
    if (upload.size === undefined || upload.offset !== upload.size) {
      throw new ConflictError(`Upload ${s.id} has ${upload.offset} of ${upload.size ?? '?'} bytes`, {
        reason: 'incomplete',
        field: 'Upload-Offset',
        upload_id: s.id,
        bytes_received: upload.offset,
      });
    }
    const finalKey = `${volumeObjectPrefix(s.volumeId)}objects/${s.id}`;
    return rt.resumable.finish(bucket, s.storageId, finalKey, {
      headBytes: MAX_EXTRACTED_TEXT_BYTES,
      ...(s.mimeType ? { contentType: s.mimeType } : {}),
    });
  }
  const head = await rt.blobs.head(bucket, s.storageId);
  if (!head) {
    throw new ConflictError(`Nothing was uploaded for upload ${s.id}`, { reason: 'object_missing', field: 'size_bytes', upload_id: s.id });
  }
  if (s.sizeBytes !== null && BigInt(head.size) !== s.sizeBytes) {
    throw new ConflictError(`The uploaded object has ${head.size} bytes, not the declared ${s.sizeBytes}`, {
      reason: 'size_mismatch',
      field: 'size_bytes',
      expected: Number(s.sizeBytes),
      actual: head.size,
    });
  }
  const got = await rt.blobs.get(bucket, s.storageId);
  const measured = await measureStream(got.body, MAX_EXTRACTED_TEXT_BYTES);
  if (s.expectedSha256 && measured.sha256 !== s.expectedSha256) {
    throw new ConflictError('The uploaded object does not match the declared sha256', {
      reason: 'checksum_mismatch',
      field: 'sha256',
      expected: s.expectedSha256,
      actual: measured.sha256,
    });
  }
  if (s.sizeBytes !== null && BigInt(measured.size) !== s.sizeBytes) {
    throw new ConflictError('The uploaded object changed while it was checked', { reason: 'size_mismatch', field: 'size_bytes' });
  }
  return { key: s.storageId, ...measured };
}

async function measureStream(body: AsyncIterable<Buffer>, headBytes: number) {
  const hash = createHash('sha256');
  const head: Buffer[] = [];
  let kept = 0;
  let size = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    size += chunk.length;
    if (kept < headBytes) {
      const part = chunk.subarray(0, headBytes - kept);
      head.push(Buffer.from(part));
      kept += part.length;
    }
  }
  return { size, sha256: hash.digest('hex'), head: Buffer.concat(head) };
}

/**
 * Ends an unfinished session at the client's request (tus termination, abortUpload): its bytes
 * go and its reservation is freed. Aborting an aborted session is a no-op; a completed one is 409.
 * A tus upload's PATCH still running, on this replica or another, lets go of the upload first (its
 * lock, as tus's own termination takes it), so no PATCH writes into bytes being removed.
 * @throws ConflictError (already completed or completing), LockedError (the upload stayed busy)
 */
export async function abortUploadSession(rt: Runtime, session: UploadSession, signal?: AbortSignal): Promise<UploadSession> {
  if (session.status === 'aborted' || session.status === 'expired' || session.status === 'failed') return session;
  if (session.protocol === 'tus') return holdingUploadLock(gatewayUploadLocker(rt), session, signal, () => abortUnlocked(rt, session));
  return abortUnlocked(rt, session);
}

async function abortUnlocked(rt: Runtime, session: UploadSession): Promise<UploadSession> {
  if (!(await endSession(rt, session, 'aborted', null))) {
    const now = await rt.db.uploadSession.findUnique({ where: { id: session.id } });
    if (now && ['aborted', 'expired', 'failed'].includes(now.status)) return now;
    throw new ConflictError(`Upload ${session.id} is ${now?.status ?? 'gone'} and cannot be aborted`, {
      upload_id: session.id,
      status: now?.status ?? null,
      field: 'upload_id',
    });
  }
  return rt.db.uploadSession.findUniqueOrThrow({ where: { id: session.id } });
}

/**
 * Ends sessions past their expiry (removing their parts and freeing their reservations), and
 * sessions stuck `completing` for as long (a gateway died mid-commit). Runs in the maintenance
 * sweep; several replicas may run it at once (each session is ended by one). Returns how many.
 */
export async function sweepExpiredUploads(rt: Runtime, now = new Date(), limit = 100): Promise<{ expired: number; bytes: number }> {
  const stuckBefore = new Date(now.getTime() - rt.settings.uploadSessionTtlMs);
  const due = await rt.db.uploadSession.findMany({
    where: {
      OR: [
        { status: 'uploading', expiresAt: { lte: now } },
        { status: 'completing', updatedAt: { lte: stuckBefore } },
      ],
    },
    take: limit,
    orderBy: { expiresAt: 'asc' },
  });
  let expired = 0;
  let bytes = 0;
  for (const s of due) {
    const received = Number(s.bytesReceived);
    if (await endSession(rt, s, 'expired', { reason: 'expired' }, ['uploading', 'completing'])) {
      expired += 1;
      bytes += received;
    }
  }
  return { expired, bytes };
}

/** Unfinished sessions of a workspace's volumes (reconcile reports them). */
export async function unfinishedUploads(rt: Runtime, workspaceId: string): Promise<{ count: number; reservedBytes: number }> {
  const agg = await rt.db.uploadSession.aggregate({
    where: { workspaceId, status: { in: ['uploading', 'completing'] } },
    _count: { _all: true },
    _sum: { reservedBytes: true },
  });
  return { count: agg._count._all, reservedBytes: Number(agg._sum.reservedBytes ?? 0n) };
}

/**
 * Removes stored uploads no unfinished session owns (their sessions went with a purged volume),
 * once older than `olderThan`. Returns how many.
 */
export async function removeStrayUploads(rt: Runtime, workspaceId: string, bucket: string, olderThan: Date): Promise<number> {
  const live = await rt.db.uploadSession.findMany({
    where: { workspaceId, protocol: 'tus', status: { in: ['uploading', 'completing'] } },
    select: { storageId: true },
  });
  const ids = new Set(live.map((r) => r.storageId));
  return rt.resumable.removeStrays(bucket, (id) => ids.has(id), olderThan);
}

/** Object keys (and key prefixes) that unfinished sessions own: reconcile must leave them alone. */
export async function keysInFlight(rt: Runtime, volumeId: string): Promise<string[]> {
  const rows = await rt.db.uploadSession.findMany({
    where: { volumeId, status: { in: ['uploading', 'completing'] } },
    select: { storageId: true, id: true },
  });
  return rows.flatMap((r) => [r.storageId, `${volumeObjectPrefix(volumeId)}objects/${r.id}`]);
}

/** Sessions of a volume the principal can see (GraphQL/REST status lists are not built yet; by id only). */
export async function uploadStatus(rt: Runtime, p: Principal, route: VolumeRoute, uploadId: string): Promise<UploadView> {
  return viewSession(rt, await openUploadSession(rt, p, route, uploadId));
}

const FINAL = new Set(['completed', 'failed', 'aborted', 'expired']);

/** A session as its progress event (what uploadProgress subscribers get first). */
export function progressOf(view: UploadView): UploadProgressEvent {
  const s = view.session;
  return {
    uploadId: s.id,
    volumeId: s.volumeId,
    status: s.status,
    bytesReceived: view.bytesReceived,
    sizeBytes: s.sizeBytes === null ? null : Number(s.sizeBytes),
    entryId: s.entryId,
    entryVersion: s.entryVersion,
  };
}

/**
 * Progress of one upload: its state now, then bytes received (about every second while a tus
 * PATCH runs, and after each), ending with completed, failed, aborted or expired. Authorised
 * before the stream opens, as the session itself (a write mount on its path for app keys).
 * @throws NotFoundError, ForbiddenError
 */
export async function watchUpload(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  uploadId: string,
): Promise<AsyncIterable<UploadProgressEvent>> {
  const session = await openUploadSession(rt, p, route, uploadId);
  return watchUntilTerminal(rt, 'uploadProgress', session.id, {
    current: async () => progressOf(await viewSession(rt, session)),
    isTerminal: (e) => FINAL.has(e.status),
    accept: (e, last) => FINAL.has(e.status) || !last || e.bytesReceived >= last.bytesReceived,
  });
}
