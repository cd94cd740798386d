// Upload sessions: resumable (tus) and signed-URL uploads of file entries, their status, completion,
// abort, and the uploadProgress subscription. Rules live in src/domain/entries/resumable.ts.
import { locateVolume } from '../../domain/access/authorize.js';
import {
  abortUploadSession,
  completeUploadSession,
  createUploadSession,
  openUploadSession,
  type UploadView,
  uploadStatus,
  watchUpload,
} from '../../domain/entries/resumable.js';
import type { UploadProgressEvent } from '../../domain/shared/events.js';
import type { SignedPart } from '../../storage/blob-store.js';
import { builder } from '../builder.js';
import { toDomainInput } from '../inputs.js';
import { FencingInput, guardOf } from './entry-mutations.js';

const UploadProtocol = builder.enumType('UploadProtocol', {
  description:
    'tus: bytes PATCHed to the gateway (resumable, tus 1.0); signed_url: one PUT straight to the bucket (S3) or the gateway (local store)',
  values: ['tus', 'signed_url'] as const,
});
const UploadStatus = builder.enumType('UploadStatus', {
  values: ['uploading', 'completing', 'completed', 'failed', 'aborted', 'expired'] as const,
});

const UploadSessionRef = builder.objectRef<UploadView>('UploadSession').implement({
  description:
    'A file upload in more than one request. The entry appears when it completes; until then its size is reserved on the volume.',
  fields: (t) => ({
    id: t.id({ resolve: (v) => v.session.id }),
    volumeId: t.id({ resolve: (v) => v.session.volumeId }),
    path: t.string({ resolve: (v) => v.session.path }),
    protocol: t.field({ type: UploadProtocol, resolve: (v) => v.session.protocol }),
    status: t.field({ type: UploadStatus, resolve: (v) => v.session.status }),
    sizeBytes: t.field({
      type: 'SafeInt',
      nullable: true,
      description: 'Null while a tus upload defers its length',
      resolve: (v) => (v.session.sizeBytes === null ? null : Number(v.session.sizeBytes)),
    }),
    bytesReceived: t.field({ type: 'SafeInt', resolve: (v) => v.bytesReceived }),
    reservedBytes: t.field({
      type: 'SafeInt',
      description: 'Held against the volume quota until the upload ends',
      resolve: (v) => Number(v.session.reservedBytes),
    }),
    mimeType: t.string({ nullable: true, resolve: (v) => v.session.mimeType }),
    filename: t.string({ nullable: true, resolve: (v) => v.session.filename }),
    error: t.field({
      type: 'JSON',
      nullable: true,
      description: 'Why a failed upload failed (reason, quota, …)',
      resolve: (v) => v.session.error ?? null,
    }),
    expiresAt: t.field({ type: 'DateTime', resolve: (v) => v.session.expiresAt }),
    createdAt: t.field({ type: 'DateTime', resolve: (v) => v.session.createdAt }),
    completedAt: t.field({ type: 'DateTime', nullable: true, resolve: (v) => v.session.completedAt }),
    entry: t.prismaField({
      type: 'Entry',
      nullable: true,
      description: 'The entry the upload committed (once completed)',
      resolve: (query, v, _args, ctx) =>
        v.session.entryId ? ctx.runtime.db.entry.findUnique({ ...query, where: { id: v.session.entryId } }) : null,
    }),
  }),
});

interface CreatedUpload {
  view: UploadView;
  url: string | null;
  headers: Record<string, string>;
  parts: SignedPart[];
  expiresAt: Date;
}

const UploadPartRef = builder.objectRef<SignedPart>('UploadPartUrl').implement({
  description: 'One part of a multipart upload: PUT exactly sizeBytes to url with headers, keep the ETag it answers.',
  fields: (t) => ({
    partNumber: t.exposeInt('partNumber'),
    sizeBytes: t.field({ type: 'SafeInt', resolve: (p) => p.size }),
    url: t.exposeString('url'),
    headers: t.field({ type: 'JSON', resolve: (p) => p.headers }),
  }),
});

const UploadPartInput = builder.inputType('UploadPartInput', {
  fields: (t) => ({ partNumber: t.int({ required: true }), etag: t.string({ required: true }) }),
});

const CreateUploadPayload = builder.objectRef<CreatedUpload>('CreateUploadPayload').implement({
  fields: (t) => ({
    upload: t.field({ type: UploadSessionRef, resolve: (c) => c.view }),
    uploadUrl: t.string({
      nullable: true,
      description:
        'signed_url: the URL to PUT the bytes to (no credentials needed), then call completeUpload; null when they go in parts. tus: the upload URL (a path on this gateway) to PATCH with a tus client.',
      resolve: (c) => c.url,
    }),
    parts: t.field({
      type: [UploadPartRef],
      description: 'signed_url: one PUT per part (S3 multipart with partSizeBytes or above 5 GiB; else the one URL as part 1)',
      resolve: (c) => c.parts,
    }),
    method: t.string({
      description: 'PUT (signed_url) or PATCH (tus)',
      resolve: (c) => (c.view.session.protocol === 'tus' ? 'PATCH' : 'PUT'),
    }),
    headers: t.field({ type: 'JSON', description: 'Headers the PUT must carry (they are signed)', resolve: (c) => c.headers }),
    expiresAt: t.field({ type: 'DateTime', description: 'When the URL stops working', resolve: (c) => c.expiresAt }),
  }),
});

const CreateUploadInput = builder.inputType('CreateUploadInput', {
  fields: (t) => ({
    protocol: t.field({ type: UploadProtocol, description: 'Default signed_url' }),
    sizeBytes: t.field({ type: 'SafeInt', description: 'Required for signed_url; omit for a tus upload that defers its length' }),
    mimeType: t.string(),
    filename: t.string(),
    sha256: t.string({ description: 'Hex sha256, checked against the stored bytes before the entry is committed' }),
    schemaId: t.string(),
    tags: t.stringList(),
    metadata: t.field({ type: 'JSON' }),
    ttlSeconds: t.int(),
    executionId: t.string(),
    expiresIn: t.int({ description: 'Seconds a signed URL stays valid (60–604800, default 3600)' }),
    partSizeBytes: t.field({ type: 'SafeInt', description: 'S3: send the file in presigned parts of this size (at least 5 MiB)' }),
  }),
});

const UploadProgressRef = builder.objectRef<UploadProgressEvent>('UploadProgress').implement({
  description: 'Where an upload stands: bytes received, and its final state.',
  fields: (t) => ({
    uploadId: t.exposeID('uploadId'),
    volumeId: t.exposeID('volumeId'),
    status: t.field({ type: UploadStatus, resolve: (e) => e.status }),
    bytesReceived: t.field({ type: 'SafeInt', resolve: (e) => e.bytesReceived }),
    sizeBytes: t.field({ type: 'SafeInt', nullable: true, resolve: (e) => e.sizeBytes }),
    percent: t.float({
      nullable: true,
      resolve: (e) => (e.sizeBytes ? Math.min(100, (e.bytesReceived / e.sizeBytes) * 100) : e.sizeBytes === 0 ? 100 : null),
    }),
    entryId: t.id({ nullable: true, resolve: (e) => e.entryId }),
    entryVersion: t.int({ nullable: true, resolve: (e) => e.entryVersion }),
  }),
});

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    uploadStatus: t.field({
      type: UploadSessionRef,
      description: 'An upload session of the volume (its path must be writable by the caller).',
      args: { volumeId: t.arg.id({ required: true }), uploadId: t.arg.id({ required: true }) },
      resolve: async (_root, args, ctx) =>
        uploadStatus(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(args.volumeId)), String(args.uploadId)),
    }),
  };
});

builder.mutationFields((base) => {
  const t = base.withAuth({ authenticated: true });
  const ids = { volumeId: t.arg.id({ required: true }), uploadId: t.arg.id({ required: true }) };
  return {
    createUpload: t.field({
      type: CreateUploadPayload,
      description:
        'Opens an upload of a file entry: reserves its size on the volume (QUOTA_EXCEEDED when it cannot), and answers where to send the bytes. Nothing is visible before it completes; unfinished uploads expire.',
      args: {
        volumeId: t.arg.id({ required: true }),
        path: t.arg.string({ required: true }),
        input: t.arg({ type: CreateUploadInput }),
        expectedVersion: t.arg.int({ description: 'Commit only over this version (CONFLICT otherwise)' }),
        createOnly: t.arg.boolean({ description: 'Commit only if nothing exists at the path' }),
        lockId: t.arg.id(),
        fencing: t.arg({ type: FencingInput }),
      },
      resolve: async (_root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        const { protocol, ...rest } = args.input ?? {};
        const raw = {
          ...toDomainInput(rest as Record<string, unknown>),
          path: args.path,
          ...(args.expectedVersion ? { expected_version: args.expectedVersion } : {}),
          ...(args.createOnly ? { create_only: true } : {}),
        };
        const { view, put } = await createUploadSession(ctx.runtime, ctx.principal, route, protocol ?? 'signed_url', raw, guardOf(args), {
          path: ['path'],
          body: ['input'],
        });
        const tusUrl = `/v1/orgs/${route.orgId}/workspaces/${route.workspaceId}/volumes/${route.volumeId}/uploads/${view.session.id}`;
        return {
          view,
          url: put ? put.url : tusUrl,
          headers: put?.headers ?? { 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream' },
          parts: put?.parts ?? [],
          expiresAt: put?.expiresAt ?? view.session.expiresAt,
        };
      },
    }),
    completeUpload: t.field({
      type: UploadSessionRef,
      description:
        'Verifies the uploaded bytes (size, and sha256 when declared) and commits the entry exactly as uploadEntry does. A completed upload answers again; a tus upload completes by itself with its last byte.',
      args: {
        ...ids,
        parts: t.arg({ type: [UploadPartInput], description: 'A multipart upload: each part with the ETag its PUT answered' }),
      },
      resolve: async (_root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        const session = await openUploadSession(ctx.runtime, ctx.principal, route, String(args.uploadId));
        return completeUploadSession(ctx.runtime, session, { parts: args.parts ?? undefined, partsLoc: ['parts'] });
      },
    }),
    abortUpload: t.field({
      type: UploadSessionRef,
      description:
        'Ends an unfinished upload: its bytes are removed and its reservation freed (CONFLICT once completed). A tus PATCH of it still running is stopped first (LOCKED if it has not let go within 30 s).',
      args: ids,
      resolve: async (_root, args, ctx) => {
        const route = await locateVolume(ctx.runtime, String(args.volumeId));
        const session = await abortUploadSession(
          ctx.runtime,
          await openUploadSession(ctx.runtime, ctx.principal, route, String(args.uploadId)),
        );
        return { session, bytesReceived: Number(session.bytesReceived) };
      },
    }),
  };
});

builder.subscriptionFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    uploadProgress: t.field({
      type: UploadProgressRef,
      description:
        'Progress of one upload: its state now, then bytes received (about every second while bytes flow), ending with completed, failed, aborted or expired.',
      args: { volumeId: t.arg.id({ required: true }), uploadId: t.arg.id({ required: true }) },
      subscribe: async (_root, args, ctx) =>
        watchUpload(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(args.volumeId)), String(args.uploadId)),
      resolve: (e) => e,
    }),
  };
});
