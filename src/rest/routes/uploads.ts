/**
 * Upload sessions over REST: the tus 1.0 resumable-upload protocol (creation, HEAD offset, PATCH,
 * termination, expiration) at `…/volumes/{id}/uploads[/{upload_id}]`, so tus-js-client and Uppy
 * work unchanged, plus signed upload URLs (`POST …/entries/{path}/upload-url`) and their completion
 * (`POST …/uploads/{upload_id}/complete`). Sessions, quotas and the commit live in
 * src/domain/entries/resumable.ts; @tus/server only moves PATCH bytes into the store.
 */

import type { IncomingMessage } from 'node:http';
import { EVENTS, Metadata, Server, type Upload } from '@tus/server';
import type { Context } from 'hono';
import { z } from 'zod';
import type { Principal } from '../../domain/access/principal.js';
import { checkUploadAllowance } from '../../domain/access/rate-limits.js';
import {
  abortUploadSession,
  admitBytes,
  completeUploadSession,
  createUploadSession,
  fromTusMetadata,
  NewUploadInput,
  noteProgress,
  openUploadSession,
  renameTusFields,
  sessionClosed,
  type UploadView,
  viewSession,
} from '../../domain/entries/resumable.js';
import { etagOf } from '../../domain/entries/rules.js';
import { gatewayUploadLocker } from '../../domain/entries/upload-locks.js';
import { ValidationError } from '../../domain/shared/errors.js';
import { assertAcceptableInput } from '../../domain/shared/input-policy.js';
import type { VolumeRoute } from '../../domain/shared/routes.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { parseInput } from '../../domain/shared/validation.js';
import type { UploadSession } from '../../generated/prisma/client.js';
import { type RestApp, type RestEnv, volumeRoute } from '../env.js';
import { handleError } from '../errors.js';
import { conflictResponse, Entry, entryWriteHeaders, errorResponses, etagHeader, ok, quotaResponse, VolumeParams } from '../schemas.js';
import { entryJson } from '../serializers.js';
import { executionId, preconditions } from '../write-headers.js';

const BASE = '/orgs/:org_id/workspaces/:workspace_id/volumes/:volume_id';
const DOC_BASE = '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}';
const TUS_VERSION = '1.0.0';
const TUS_EXTENSIONS = 'creation,creation-defer-length,termination,expiration';

/** What a tus request carries into @tus/server's hooks (keyed by the request object it is handed). */
interface InFlight {
  c: Context<RestEnv>;
  session: UploadSession;
  principal: Principal;
}

const routeOf = (c: Context<RestEnv>): VolumeRoute => volumeRoute(parseInput(VolumeParams, c.req.param(), ['path']));

/** The session as JSON (REST status, creation and completion answers). */
export function uploadJson(view: UploadView) {
  const s = view.session;
  return {
    upload_id: s.id,
    volume_id: s.volumeId,
    path: s.path,
    protocol: s.protocol,
    status: s.status,
    size_bytes: s.sizeBytes === null ? null : Number(s.sizeBytes),
    bytes_received: view.bytesReceived,
    reserved_bytes: Number(s.reservedBytes),
    mime_type: s.mimeType,
    filename: s.filename,
    entry_id: s.entryId,
    entry_version: s.entryVersion,
    error: s.error ?? null,
    expires_at: s.expiresAt.toISOString(),
    created_at: s.createdAt.toISOString(),
    completed_at: s.completedAt?.toISOString() ?? null,
  };
}

const UploadJson = z.object({
  upload_id: z.string(),
  volume_id: z.string(),
  path: z.string(),
  protocol: z.enum(['tus', 'signed_url']),
  status: z.enum(['uploading', 'completing', 'completed', 'failed', 'aborted', 'expired']),
  size_bytes: z.number().int().nullable(),
  bytes_received: z.number().int(),
  reserved_bytes: z.number().int(),
  mime_type: z.string().nullable(),
  filename: z.string().nullable(),
  entry_id: z.string().nullable(),
  entry_version: z.number().int().nullable(),
  error: z.record(z.string(), z.unknown()).nullable(),
  expires_at: z.string(),
  created_at: z.string(),
  completed_at: z.string().nullable(),
});

const UploadUrlBody = NewUploadInput.omit({ path: true });

/** Headers every tus answer carries (CORS exposure included, for browser clients). */
function tusHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return {
    'Tus-Resumable': TUS_VERSION,
    'Access-Control-Expose-Headers':
      'Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, Upload-Defer-Length, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, ETag',
    ...extra,
  };
}

/** The write conditions and writer of a tus creation (or upload-url) request: the same headers as any entry write. */
function writeGuards(c: Context<RestEnv>) {
  const execution = executionId(c);
  return { ...preconditions(c), ...(execution ? { executionId: execution } : {}) };
}

export function registerUploadRoutes(rt: Runtime, app: RestApp): void {
  const inFlight = new WeakMap<Request, InFlight>();
  /** Sessions whose PATCH is running, by store id (tus progress events name the store id only). */
  const byStoreId = new Map<string, InFlight>();
  const servers = new Map<string, Server>();

  /** A thrown value as tus hooks must throw it: our envelope as the body. */
  const asTusError = async (c: Context<RestEnv>, err: unknown) => {
    const res = handleError(rt.log, err, c);
    return { status_code: res.status, body: await res.text() };
  };

  const serverFor = (bucket: string): Server => {
    let server = servers.get(bucket);
    if (server) return server;
    server = new Server({
      path: '/v1/uploads',
      datastore: rt.resumable.dataStore(bucket),
      maxSize: rt.settings.maxUploadBytes,
      getFileIdFromRequest: (req) => inFlight.get(req as unknown as Request)?.session.storageId,
      onIncomingRequest: async (req) => {
        const f = inFlight.get(req as unknown as Request);
        if (!f) throw { status_code: 404, body: 'Not found\n' };
        if (req.method !== 'PATCH') return;
        const offset = Number(req.headers.get('upload-offset') ?? 0);
        const length = Number(req.headers.get('content-length') ?? 0);
        try {
          await admitBytes(rt, f.session, offset, Number.isFinite(length) ? length : 0);
        } catch (err) {
          throw await asTusError(f.c, err);
        }
      },
      onUploadFinish: async (req) => {
        const f = inFlight.get(req as unknown as Request);
        if (!f) throw { status_code: 404, body: 'Not found\n' };
        try {
          const done = await completeUploadSession(rt, f.session);
          return {
            headers: {
              ...(done.session.entryId ? { 'X-Entry-Id': done.session.entryId } : {}),
              ...(done.session.entryVersion ? { ETag: etagOf(done.session.entryVersion) } : {}),
            },
          };
        } catch (err) {
          throw await asTusError(f.c, err);
        }
      },
      // One request at a time per upload, across replicas (src/domain/entries/upload-locks.ts).
      locker: gatewayUploadLocker(rt),
    });
    server.on(EVENTS.POST_RECEIVE, (_stream: unknown, upload: Upload) => {
      const f = byStoreId.get(upload.id);
      if (f) void noteProgress(rt, f.session, upload.offset);
    });
    servers.set(bucket, server);
    return server;
  };

  const bucketOf = async (workspaceId: string) =>
    (await rt.db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { s3Bucket: true } })).s3Bucket;

  // tus discovery.
  app.options(`${BASE}/uploads`, (c) =>
    c.body(null, 204, {
      ...tusHeaders(),
      'Tus-Version': TUS_VERSION,
      'Tus-Extension': TUS_EXTENSIONS,
      'Tus-Max-Size': String(rt.settings.maxUploadBytes),
      'Access-Control-Allow-Methods': 'POST, HEAD, PATCH, OPTIONS, DELETE',
      'Access-Control-Allow-Headers':
        'Authorization, X-API-Key, Content-Type, Upload-Length, Upload-Metadata, Upload-Offset, Upload-Defer-Length, Tus-Resumable, If-Match, X-Lock-Id, X-Lock-Partition, X-Fencing-Token, X-Execution-Id',
    }),
  );

  // tus creation: the session (and its reservation) first, then the empty upload in the store.
  app.post(`${BASE}/uploads`, async (c) => {
    const route = routeOf(c);
    if (c.req.header('tus-resumable') !== TUS_VERSION) {
      return c.text(`Tus-Resumable ${TUS_VERSION} required\n`, 412, tusHeaders({ 'Tus-Version': TUS_VERSION }));
    }
    const lengthHeader = c.req.header('upload-length');
    const deferred = c.req.header('upload-defer-length');
    let size: number | null;
    if (lengthHeader !== undefined) {
      if (!/^\d{1,16}$/.test(lengthHeader))
        throw ValidationError.field(['header', 'upload-length'], 'Upload-Length must be a non-negative integer', lengthHeader);
      size = Number(lengthHeader);
    } else if (deferred === '1') {
      size = null;
    } else {
      throw ValidationError.field(['header', 'upload-length'], 'Upload-Length (or Upload-Defer-Length: 1) is required', null, 'missing');
    }
    let meta: Record<string, string | null>;
    try {
      meta = Metadata.parse(c.req.header('upload-metadata'));
    } catch {
      throw ValidationError.field(
        ['header', 'upload-metadata'],
        'Upload-Metadata must carry the entry path (key "path") as tus metadata',
        c.req.header('upload-metadata') ?? null,
        'missing',
      );
    }
    assertAcceptableInput(meta, ['header', 'upload-metadata']);
    const raw = fromTusMetadata(meta, size);
    const { view } = await createUploadSession(rt, c.get('principal'), route, 'tus', raw, writeGuards(c), {
      path: ['header', 'upload-metadata', 'path'],
      body: ['header', 'upload-metadata'],
    }).catch((err: unknown) => {
      throw err instanceof ValidationError ? renameTusFields(err, meta) : err;
    });
    const location = `${new URL(c.req.url).pathname}/${view.session.id}`;
    return c.body(null, 201, tusHeaders({ Location: location, 'Upload-Expires': view.session.expiresAt.toUTCString() }));
  });

  /** Opens the addressed session for a tus request; an ended or expired one is 410/404 as tus wants. */
  const tusSession = async (c: Context<RestEnv>) => {
    const session = await openUploadSession(rt, c.get('principal'), routeOf(c), c.req.param('upload_id') ?? '');
    return session;
  };

  /** HEAD and PATCH: the session checked here, the bytes moved by @tus/server. */
  const tus = async (c: Context<RestEnv>) => {
    if (c.req.header('tus-resumable') !== TUS_VERSION) {
      return c.body(`Tus-Resumable ${TUS_VERSION} required\n`, 412, tusHeaders({ 'Tus-Version': TUS_VERSION }));
    }
    const session = await tusSession(c);
    if (session.protocol !== 'tus') {
      throw ValidationError.field(
        ['path', 'upload_id'],
        'This upload takes its bytes at its signed URL, not by tus',
        session.id,
        'protocol',
      );
    }
    if (session.status === 'completed') {
      const size = String(session.sizeBytes ?? 0n);
      return c.body(
        null,
        c.req.method === 'HEAD' ? 200 : 204,
        tusHeaders({ 'Upload-Offset': size, 'Upload-Length': size, 'Cache-Control': 'no-store' }),
      );
    }
    if (sessionClosed(session)) return c.body(null, 410, tusHeaders());
    const f: InFlight = { c, session, principal: c.get('principal') };
    const req = c.req.method === 'PATCH' ? endingCleanly(c.req.raw, c.env?.incoming) : c.req.raw;
    inFlight.set(req, f);
    const server = serverFor(await bucketOf(session.workspaceId));
    if (c.req.method === 'HEAD') return server.handleWeb(req);
    await checkUploadAllowance(rt, f.principal);
    const from = Number(c.req.header('upload-offset') ?? 0);
    byStoreId.set(session.storageId, f);
    try {
      const res = await server.handleWeb(req);
      const offset = Number(res.headers.get('upload-offset'));
      if (Number.isFinite(offset) && offset > from && session.status === 'uploading')
        await noteProgress(rt, session, offset, from, f.principal);
      return res;
    } finally {
      byStoreId.delete(session.storageId);
    }
  };
  app.patch(`${BASE}/uploads/:upload_id`, tus);

  // tus termination (and abort of a signed-URL upload): its bytes go, its reservation is freed.
  app.delete(`${BASE}/uploads/:upload_id`, async (c) => {
    const session = await tusSession(c);
    await abortUploadSession(rt, session, c.req.raw.signal);
    return c.body(null, 204, tusHeaders());
  });

  app.get(`${BASE}/uploads/:upload_id`, async (c) => {
    // Hono routes HEAD to GET handlers: HEAD is the tus offset request.
    if (c.req.method === 'HEAD') return tus(c);
    const session = await tusSession(c);
    return c.json(uploadJson(await viewSession(rt, session)));
  });

  app.post(`${BASE}/uploads/:upload_id/complete`, async (c) => {
    const session = await tusSession(c);
    const body = await optionalJson(c);
    const { parts } = parseInput(CompleteBody, body, ['body']);
    const done = await completeUploadSession(rt, session, {
      parts: parts?.map((p) => ({ partNumber: p.part_number, etag: p.etag })),
      partsLoc: ['body', 'parts'],
    });
    const entry = done.session.entryId ? await rt.db.entry.findUnique({ where: { id: done.session.entryId } }) : null;
    if (entry) c.header('ETag', etagOf(entry.version));
    return c.json({ message: 'Upload completed', upload: uploadJson(done), entry: entry ? entryJson(entry) : null }, 200);
  });

  app.post(`${BASE}/entries/:path{.+}/upload-url`, async (c) => {
    const route = routeOf(c);
    const body = await optionalJson(c);
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw ValidationError.field(['body'], 'must be an object', body, 'dict_type');
    const raw = { ...(body as Record<string, unknown>), path: c.req.param('path') };
    const { view, put } = await createUploadSession(rt, c.get('principal'), route, 'signed_url', raw, writeGuards(c), {
      path: ['path', 'path'],
      body: ['body'],
    });
    return c.json(
      {
        upload_id: view.session.id,
        upload_url: put?.url ?? null,
        method: 'PUT',
        headers: put?.headers ?? {},
        parts: (put?.parts ?? []).map((p) => ({ part_number: p.partNumber, size_bytes: p.size, url: p.url, headers: p.headers })),
        expires_at: put?.expiresAt.toISOString() ?? view.session.expiresAt.toISOString(),
        complete_url: `${new URL(c.req.url).pathname.replace(/\/entries\/.*$/, '')}/uploads/${view.session.id}/complete`,
        upload: uploadJson(view),
      },
      201,
    );
  });

  documentUploadRoutes(app);
}

/** A JSON body that may be absent (empty): `{}` then. @throws ValidationError naming the body */
async function optionalJson(c: Context<RestEnv>): Promise<unknown> {
  const type = c.req.header('content-type') ?? '';
  const text = await c.req.text();
  if (text === '') return {};
  if (!/^application\/([\w.-]+\+)?json/i.test(type)) {
    throw ValidationError.field(['body'], 'Request body must be JSON (Content-Type: application/json)', type || null, 'content_type');
  }
  try {
    return JSON.parse(text);
  } catch {
    throw ValidationError.field(['body'], 'JSON decode error', {}, 'json_invalid');
  }
}

const CompleteBody = z.object({
  parts: z
    .array(z.object({ part_number: z.number().int().min(1).max(10_000), etag: z.string().min(1).max(1024) }))
    .min(1)
    .max(10_000)
    .optional()
    .describe('A multipart upload: each part number with the ETag its PUT answered'),
});

/**
 * The request with a body that ends, rather than fails, when the client goes away mid-PATCH: what
 * arrived is then stored as it would be had the client stopped there (tus keeps partial PATCHes),
 * and the store finishes its own work (S3 parts in flight, the incomplete part) before the upload's
 * lock is released, so the client's next HEAD sees the offset the next PATCH will find. The body is
 * read from the Node request itself, one chunk per pull: Node 20's Readable.toWeb queues chunks by
 * count, not bytes, which let a fast client pile up tens of MiB ahead of the disk or S3.
 */
function endingCleanly(raw: Request, incoming: IncomingMessage | undefined): Request {
  const chunks: AsyncIterator<Uint8Array> | undefined = incoming
    ? (incoming as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
    : raw.body
      ? (raw.body as unknown as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]()
      : undefined;
  if (!chunks) return raw;
  const body = new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { value, done } = await chunks.next();
          if (done) controller.close();
          else controller.enqueue(value);
        } catch {
          controller.close();
        }
      },
      async cancel() {
        await chunks.return?.().catch(() => {});
      },
    },
    { highWaterMark: 0 },
  );
  return new Request(raw.url, { method: raw.method, headers: raw.headers, body, duplex: 'half' } as RequestInit);
}

function documentUploadRoutes(app: RestApp): void {
  const tags = ['Uploads'];
  const r = app.openAPIRegistry;
  const uploadParams = VolumeParams.extend({ upload_id: z.string().describe('The upload session id') });
  const tusHeader = {
    name: 'Tus-Resumable',
    in: 'header' as const,
    required: true,
    description: 'The tus protocol version',
    schema: { type: 'string' as const, enum: [TUS_VERSION] },
  };
  r.registerPath({
    method: 'post',
    path: `${DOC_BASE}/uploads`,
    operationId: 'createTusUpload',
    tags,
    summary: 'tus: create a resumable upload',
    description:
      'tus 1.0 creation. Upload-Length (or Upload-Defer-Length: 1) and Upload-Metadata with `path` (required), `filename`, `filetype`, `tags` (comma-separated or JSON), `metadata` (JSON object), `ttl_seconds`, `expected_version` (the If-Match equivalent) and `create_only`; If-Match, X-Lock-Id and X-Fencing-Token headers apply to the final commit. The declared size is reserved against the volume quota (507 when it cannot be). 201 with Location (the upload URL) and Upload-Expires. The entry appears when the last byte lands.',
    parameters: [
      ...entryWriteHeaders,
      tusHeader,
      { name: 'Upload-Length', in: 'header', required: false, description: 'The file size in bytes', schema: { type: 'integer' } },
      {
        name: 'Upload-Defer-Length',
        in: 'header',
        required: false,
        description: 'Instead of Upload-Length: the size is declared by a later PATCH',
        schema: { type: 'string', enum: ['1'] },
      },
      {
        name: 'Upload-Metadata',
        in: 'header',
        required: true,
        description:
          'tus metadata (key base64value pairs): path (required), filename, filetype, tags, metadata, ttl_seconds, expected_version, create_only',
        schema: { type: 'string' },
      },
    ],
    request: { params: VolumeParams },
    responses: {
      201: { description: 'Created (Location: the upload URL)' },
      412: { description: 'Tus-Resumable missing' },
      ...conflictResponse,
      ...quotaResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'head',
    path: `${DOC_BASE}/uploads/{upload_id}`,
    operationId: 'getTusUploadOffset',
    tags,
    summary: 'tus: the upload offset',
    description: 'Upload-Offset and Upload-Length of the upload (410 once it expired or was terminated).',
    parameters: [tusHeader],
    request: { params: uploadParams },
    responses: { 200: { description: 'Upload-Offset, Upload-Length' }, 410: { description: 'Expired or terminated' }, ...errorResponses },
  });
  r.registerPath({
    method: 'patch',
    path: `${DOC_BASE}/uploads/{upload_id}`,
    operationId: 'patchTusUpload',
    tags,
    summary: 'tus: send bytes at an offset',
    description:
      'Content-Type application/offset+octet-stream, Upload-Offset equal to the current offset. 204 with the new Upload-Offset. The PATCH that lands the last byte commits the entry (ETag and X-Entry-Id headers); its errors are those of a one-shot upload (409 precondition or lock, 507 quota). A deferred-length upload that outgrows the volume quota ends with 507 and frees its reservation.',
    parameters: [
      tusHeader,
      {
        name: 'Upload-Offset',
        in: 'header',
        required: true,
        description: 'The offset the bytes start at: the current offset',
        schema: { type: 'integer' },
      },
    ],
    request: {
      params: uploadParams,
      body: { content: { 'application/offset+octet-stream': { schema: z.string().meta({ format: 'binary' }) } }, required: true },
    },
    responses: {
      204: { description: 'Bytes stored' },
      409: { description: 'Offset mismatch, precondition or lock' },
      410: { description: 'Expired or terminated' },
      ...quotaResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'delete',
    path: `${DOC_BASE}/uploads/{upload_id}`,
    operationId: 'deleteUpload',
    tags,
    summary: 'tus termination: abort an upload',
    description:
      "Removes the upload's bytes and frees its reservation (signed-URL uploads too). A PATCH of the upload still running, on any replica, is stopped first (tus's rule: the newer request wins); 409 LOCKED if it has not let go within 30 s, 409 CONFLICT once completed.",
    request: { params: uploadParams },
    responses: { 204: { description: 'Terminated' }, ...conflictResponse, ...errorResponses },
  });
  r.registerPath({
    method: 'get',
    path: `${DOC_BASE}/uploads/{upload_id}`,
    operationId: 'getUpload',
    tags,
    summary: 'Status of an upload session',
    description: 'The session: status, bytes received, the reservation it holds, expiry, and its entry once completed.',
    request: { params: uploadParams },
    responses: { 200: ok(UploadJson), ...errorResponses },
  });
  r.registerPath({
    method: 'post',
    path: `${DOC_BASE}/uploads/{upload_id}/complete`,
    operationId: 'completeUpload',
    tags,
    summary: 'Complete an upload: verify the object and commit the entry',
    description:
      'For a signed-URL upload: checks the object against the declared size_bytes and sha256 (409 `size_mismatch`/`checksum_mismatch`/`object_missing`, and the upload ends with nothing left), then commits the entry exactly as a one-shot upload does. A tus upload completes by itself with its last byte; completing it again answers its entry.',
    request: { params: uploadParams, body: { content: { 'application/json': { schema: CompleteBody } }, required: false } },
    responses: {
      200: ok(z.object({ message: z.string(), upload: UploadJson, entry: z.union([Entry, z.null()]) }), 'Successful Response', etagHeader),
      ...conflictResponse,
      ...quotaResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'post',
    path: `${DOC_BASE}/entries/{path}/upload-url`,
    operationId: 'createUploadUrl',
    tags,
    summary: 'A signed URL to upload a file entry directly to the bucket',
    description:
      'Reserves size_bytes against the volume quota and answers a URL to PUT exactly size_bytes of mime_type to (presigned by S3 with Content-Length and Content-Type signed, or signed by the gateway with the local store) before expires_at, then POST complete_url. Nothing is visible before completion; an abandoned upload expires (UPLOAD_SESSION_TTL_MS) and is swept. If-Match, If-None-Match, X-Lock-Id and X-Fencing-Token apply to the commit at completion.',
    parameters: entryWriteHeaders,
    request: {
      params: VolumeParams.extend({ path: z.string().describe('Entry path, slashes included') }),
      body: { content: { 'application/json': { schema: UploadUrlBody } }, required: true },
    },
    responses: {
      201: ok(
        z.object({
          upload_id: z.string(),
          upload_url: z.string().nullable().describe('The one URL to PUT the file to; null when it goes in parts'),
          method: z.literal('PUT'),
          headers: z.record(z.string(), z.string()),
          parts: z
            .array(
              z.object({
                part_number: z.number().int(),
                size_bytes: z.number().int(),
                url: z.string(),
                headers: z.record(z.string(), z.string()),
              }),
            )
            .describe(
              'One PUT per part (S3 multipart when part_size_bytes is given or the file exceeds 5 GiB; else the one URL as part 1): keep each ETag for completion',
            ),
          expires_at: z.string(),
          complete_url: z.string(),
          upload: UploadJson,
        }),
        'Created',
      ),
      ...conflictResponse,
      ...quotaResponse,
      ...errorResponses,
    },
  });
}
