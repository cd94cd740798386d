/**
 * REST entry routes (the reference's `/entries/{path}` catch-all with its download and upload
 * suffixes). ~300 lines because one catch-all route carries every entry verb, its headers
 * (If-Match, X-Lock-Id, X-Fencing-Token, X-Execution-Id) and its OpenAPI registration.
 */
import type { Context } from 'hono';
import { z } from 'zod';
import { MAX_BATCH_ENTRIES, WriteEntriesInput, writeEntries } from '../../domain/entries/batch.js';
import { deleteEntry, getEntry, moveEntry, writeEntry } from '../../domain/entries/entries.js';
import { listDirectory } from '../../domain/entries/listing.js';
import { etagOf, UploadFieldsInput, WriteEntryInput } from '../../domain/entries/rules.js';
import { DEFAULT_EXPIRES_IN, downloadUrl, MAX_EXPIRES_IN, MIN_EXPIRES_IN, uploadEntry } from '../../domain/entries/uploads.js';
import { ValidationError } from '../../domain/shared/errors.js';
import { DEFAULT_LIMIT, MAX_LIMIT, queryInt } from '../../domain/shared/pagination.js';
import type { VolumeRoute } from '../../domain/shared/routes.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { parseInput } from '../../domain/shared/validation.js';
import { type RestApp, type RestEnv, volumeRoute } from '../env.js';
import { readUpload } from '../multipart.js';
import {
  batchWriteHeaders,
  conflictResponse,
  Entry,
  entryGuardHeaders,
  entryWriteHeaders,
  errorResponses,
  etagHeader,
  Message,
  ok,
  quotaResponse,
  VolumeParams,
} from '../schemas.js';
import { entryJson } from '../serializers.js';
import { executionId, preconditions } from '../write-headers.js';

const BASE = '/orgs/:org_id/workspaces/:workspace_id/volumes/:volume_id';
// registerPath paths get the app's /v1 base prepended, like openapi() routes.
const DOC_BASE = '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}';

/** The volume addressed by the route, validated like every other path parameter. */
function routeOf(c: Context<RestEnv>): VolumeRoute {
  return volumeRoute(parseInput(VolumeParams, c.req.param(), ['path']));
}

const ListQuery = z.object({
  path: z.string().max(1100).optional().describe('The directory to list (default /)'),
  limit: queryInt(1, MAX_LIMIT).default(DEFAULT_LIMIT).describe('Entries per page'),
  cursor: z.string().max(2048).optional().describe("The previous page's next_cursor"),
});
const DownloadQuery = z.object({
  expires_in: queryInt(MIN_EXPIRES_IN, MAX_EXPIRES_IN).default(DEFAULT_EXPIRES_IN).describe('Seconds the URL stays valid'),
});
const MoveBody = z.object({
  from: z.string().min(1).max(1100),
  to: z.string().min(1).max(1100),
  overwrite: z.boolean().default(false),
});

/**
 * Entry routes. The entry path is a catch-all parameter (`/entries/notes/2024/plan.md`); a GET
 * ending in `/download` and a POST ending in `/upload` are the download and upload routes.
 */
export function registerEntryRoutes(rt: Runtime, app: RestApp): void {
  app.get(`${BASE}/list`, async (c) => {
    const route = routeOf(c);
    const q = parseInput(ListQuery, c.req.query(), ['query']);
    const listing = await listDirectory(rt, c.get('principal'), route, q);
    return c.json({
      path: listing.path,
      directories: listing.directories,
      entries: listing.entries.map(entryJson),
      has_more: listing.hasMore,
      next_cursor: listing.nextCursor,
    });
  });

  app.post(`${BASE}/entries/:path{.+}/upload`, async (c) => {
    const route = routeOf(c);
    const pre = preconditions(c);
    const { file, fields } = await readUpload(c);
    const { entry, created } = await uploadEntry(rt, c.get('principal'), route, c.req.param('path'), file, fields, {
      ...pre,
      executionId: executionId(c),
    });
    c.header('ETag', etagOf(entry.version));
    return c.json({ message: 'Entry written successfully', entry: entryJson(entry) }, created ? 201 : 200);
  });

  app.get(`${BASE}/entries/:path{.+}`, async (c) => {
    // Hono's RegExpRouter runs this catch-all before a `:path{.+}/download` route registered
    // ahead of it, so the download route is dispatched here.
    const rawPath = c.req.param('path');
    if (rawPath.endsWith(DOWNLOAD_SUFFIX)) return download(rt, c, rawPath.slice(0, -DOWNLOAD_SUFFIX.length));
    const entry = await getEntry(rt, c.get('principal'), routeOf(c), rawPath);
    c.header('ETag', etagOf(entry.version));
    return c.json(entryJson(entry));
  });

  app.put(`${BASE}/entries/:path{.+}`, async (c) => {
    const route = routeOf(c);
    const pre = preconditions(c);
    const body = await readJson(c);
    const { entry, created } = await writeEntry(rt, c.get('principal'), route, c.req.param('path'), body, {
      ...pre,
      executionId: executionId(c),
    });
    c.header('ETag', etagOf(entry.version));
    return c.json({ message: 'Entry written successfully', entry: entryJson(entry) }, created ? 201 : 200);
  });

  app.post(`${BASE}/batch`, async (c) => {
    const route = routeOf(c);
    const { ifMatch, ifNoneMatch, lockId, fencing } = preconditions(c);
    // Versions are per entry (expected_version, create_only); a header could not say which.
    if (ifMatch !== undefined || ifNoneMatch) {
      const header = ifMatch !== undefined ? 'if-match' : 'if-none-match';
      throw ValidationError.field(
        ['header', header],
        'A batch states versions per entry (expected_version, create_only)',
        c.req.header(header),
      );
    }
    const body = await readJson(c);
    const written = await writeEntries(rt, c.get('principal'), route, body, {
      ...(lockId ? { lockId } : {}),
      ...(fencing ? { fencing } : {}),
      executionId: executionId(c),
    });
    return c.json({
      message: 'Entries written successfully',
      created: written.created,
      updated: written.updated,
      entries: written.entries.map(entryJson),
    });
  });

  app.delete(`${BASE}/entries/:path{.+}`, async (c) => {
    const { ifMatch, lockId, fencing } = preconditions(c);
    await deleteEntry(rt, c.get('principal'), routeOf(c), c.req.param('path'), { ifMatch, lockId, fencing });
    return c.json({ message: 'Entry deleted successfully' });
  });

  app.post(`${BASE}/move`, async (c) => {
    const route = routeOf(c);
    const body = parseInput(MoveBody, await readJson(c), ['body']);
    const { ifMatch, lockId, fencing } = preconditions(c);
    const entry = await moveEntry(
      rt,
      c.get('principal'),
      route,
      body.from,
      body.to,
      { overwrite: body.overwrite, ifMatch, lockId, fencing },
      { from: ['body', 'from'], to: ['body', 'to'] },
    );
    c.header('ETag', etagOf(entry.version));
    return c.json({ message: 'Entry moved successfully', entry: entryJson(entry) });
  });

  documentEntryRoutes(app);
}

const DOWNLOAD_SUFFIX = '/download';

/** `GET …/entries/{path}/download`: a signed URL for a file entry. */
async function download(rt: Runtime, c: Context<RestEnv>, rawPath: string) {
  const route = routeOf(c);
  const { expires_in } = parseInput(DownloadQuery, c.req.query(), ['query']);
  const entry = await getEntry(rt, c.get('principal'), route, rawPath);
  const url = await downloadUrl(rt, route, entry, expires_in);
  return c.json({
    entry_id: entry.id,
    path: entry.path,
    mime_type: entry.mimeType,
    size_bytes: Number(entry.sizeBytes),
    download_url: url,
    expires_in,
  });
}

/** A JSON body (or 422 naming the body when it is not JSON). */
async function readJson(c: Context<RestEnv>): Promise<unknown> {
  const type = c.req.header('content-type') ?? '';
  if (!/^application\/([\w.-]+\+)?json/i.test(type)) {
    throw ValidationError.field(['body'], 'Request body must be JSON (Content-Type: application/json)', type || null, 'content_type');
  }
  try {
    return await c.req.json();
  } catch {
    throw ValidationError.field(['body'], 'JSON decode error', {}, 'json_invalid');
  }
}

/** Catch-all paths are routed by hand, so their OpenAPI entries are registered here. */
function documentEntryRoutes(app: RestApp): void {
  const tags = ['Entries'];
  const params = VolumeParams.extend({ path: z.string().describe('Entry path, slashes included: notes/2024/plan.md') });
  const written = z.object({ message: z.string(), entry: Entry });
  const r = app.openAPIRegistry;
  r.registerPath({
    method: 'get',
    path: `${DOC_BASE}/entries/{path}`,
    operationId: 'getEntry',
    tags,
    summary: 'Read an entry',
    description:
      'The entry, its content included (a file entry: its metadata; GET …/download for its bytes). The ETag header carries its version.',
    request: { params },
    responses: { 200: ok(Entry, 'Successful Response', etagHeader), ...errorResponses },
  });
  r.registerPath({
    method: 'put',
    path: `${DOC_BASE}/entries/{path}`,
    operationId: 'writeEntry',
    tags,
    summary: 'Write an entry to a volume (create or replace)',
    description:
      '201 when created, 200 when replaced. The ETag header carries the new version. Conditional on If-Match / If-None-Match; under an exclusive lock on a partition covering the path only its holder (X-Lock-Id) may write; a stale X-Fencing-Token is refused.',
    parameters: entryWriteHeaders,
    request: { params, body: { content: { 'application/json': { schema: WriteEntryInput } }, required: true } },
    responses: {
      200: ok(written, 'Successful Response', etagHeader),
      201: ok(written, 'Created', etagHeader),
      ...conflictResponse,
      ...quotaResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'post',
    path: `${DOC_BASE}/batch`,
    operationId: 'writeEntries',
    tags,
    summary: 'Write several JSON/text entries in one transaction',
    description: `Creates or replaces 1 to ${MAX_BATCH_ENTRIES} entries of the volume, in order, all of them or none: each entry is a PUT body with its \`path\`, checked as a PUT is (write access, \`expected_version\` / \`create_only\` in place of If-Match / If-None-Match, quotas counting the batch's earlier entries); the first refusal answers for the batch and names \`entries[i]\`. X-Lock-Id, X-Fencing-Token and X-Execution-Id apply to every entry. The body is bounded as a PUT's.`,
    parameters: batchWriteHeaders,
    request: { params: VolumeParams, body: { content: { 'application/json': { schema: WriteEntriesInput } }, required: true } },
    responses: {
      200: ok(
        z.object({ message: z.string(), created: z.number().int(), updated: z.number().int(), entries: z.array(Entry) }),
        'Successful Response',
      ),
      ...conflictResponse,
      ...quotaResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'delete',
    path: `${DOC_BASE}/entries/{path}`,
    operationId: 'deleteEntry',
    tags,
    summary: 'Delete an entry',
    description:
      'Deletes the entry (and its file, for a file entry). Conditional on If-Match; guarded by locks (X-Lock-Id) and fencing tokens.',
    parameters: entryGuardHeaders,
    request: { params },
    responses: { 200: ok(Message), ...conflictResponse, ...errorResponses },
  });
  r.registerPath({
    method: 'get',
    path: `${DOC_BASE}/list`,
    operationId: 'listDirectory',
    tags,
    summary: 'List entries in a volume (directory-like)',
    description:
      'The entries directly in path (a directory, default /) and the sub-directories directly under it (full paths ending in /, ready to list next), paged by path (limit, cursor). What the key may not read is not shown.',
    request: { params: VolumeParams, query: ListQuery },
    responses: {
      200: ok(
        z.object({
          path: z.string(),
          directories: z.array(z.string()),
          entries: z.array(Entry),
          has_more: z.boolean(),
          next_cursor: z.string().nullable(),
        }),
      ),
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'post',
    path: `${DOC_BASE}/entries/{path}/upload`,
    operationId: 'uploadEntry',
    tags,
    summary: 'Upload a file entry to a volume',
    description:
      'Streamed to the blob store; text-like files also get content_text. 413 above MAX_UPLOAD_BYTES. 201 when created, 200 when replaced; the ETag header carries the new version. Same conditions and guards as PUT.',
    parameters: entryWriteHeaders,
    request: {
      params,
      body: {
        content: {
          'multipart/form-data': {
            schema: UploadFieldsInput.extend({ file: z.string().meta({ format: 'binary' }).describe('The file (binary)') }),
          },
        },
        required: true,
      },
    },
    responses: {
      200: ok(written, 'Successful Response', etagHeader),
      201: ok(written, 'Created', etagHeader),
      ...conflictResponse,
      ...quotaResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'get',
    path: `${DOC_BASE}/entries/{path}/download`,
    operationId: 'getEntryDownloadUrl',
    tags,
    summary: 'Get a presigned download URL for a file entry',
    description:
      'A URL any HTTP client can GET, without credentials, until expires_in seconds from now: presigned by S3, or signed by the gateway (local blob store).',
    request: { params, query: DownloadQuery },
    responses: {
      200: ok(
        z.object({
          entry_id: z.string(),
          path: z.string(),
          mime_type: z.string().nullable(),
          size_bytes: z.number().int(),
          download_url: z.string(),
          expires_in: z.number().int(),
        }),
      ),
      ...conflictResponse,
      ...errorResponses,
    },
  });
  r.registerPath({
    method: 'post',
    path: `${DOC_BASE}/move`,
    operationId: 'moveEntry',
    tags,
    summary: 'Rename an entry atomically (409 if the target exists, unless overwrite)',
    description:
      'Moves the entry at from to to, incrementing its version (the ETag header carries it). If-Match applies to the entry at from; locks and fencing tokens guard both paths.',
    parameters: entryGuardHeaders,
    request: { params: VolumeParams, body: { content: { 'application/json': { schema: MoveBody } }, required: true } },
    responses: { 200: ok(written, 'Successful Response', etagHeader), ...conflictResponse, ...errorResponses },
  });
}
