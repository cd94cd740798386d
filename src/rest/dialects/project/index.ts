import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { z } from 'zod';
import { enterOrg } from '../../../domain/access/authenticate.js';
import { requireScope, type Scope } from '../../../domain/access/principal.js';
import { startBackup } from '../../../domain/backups/backups.js';
import { ConflictError, NotFoundError, ValidationError } from '../../../domain/shared/errors.js';
import type { VolumeRoute } from '../../../domain/shared/routes.js';
import type { Runtime } from '../../../domain/shared/runtime.js';
import { parseInput } from '../../../domain/shared/validation.js';
import { labelSlug } from '../../../domain/volumes/inputs.js';
import { deleteVolume } from '../../../domain/volumes/lifecycle.js';
import { listOrgVolumes, listSharedVolumes, OrgVolumeListQuery, VolumeListQuery } from '../../../domain/volumes/listing.js';
import { volumeOwner } from '../../../domain/volumes/owners.js';
import { setVolumeShared } from '../../../domain/volumes/sharing.js';
import { createVolume, getVolume, updateVolume, volumeRouteById } from '../../../domain/volumes/volumes.js';
import type { Volume } from '../../../generated/prisma/client.js';
import type { RestEnv } from '../../env.js';
import { createDialectApp, type DialectOptions, json, ORG_HEADER, OrgIdHeader, orgOf, retryAfter } from '../shared.js';
import { projectErrorBody } from './errors.js';
import {
  BYTES_PER_GB,
  CreateBody,
  Created,
  domainSort,
  ErrorBody,
  IdParam,
  ListQuery,
  listItemJson,
  MAX_LIMIT,
  ProjectVolume,
  SharedListQuery,
  SharedNow,
  SharedVolumeList,
  SyncStarted,
  sharedItemJson,
  UpdateBody,
  VolumeList,
  volumeJson,
} from './shapes.js';

// The project-volumes dialect (issue #16; /work/shared/reference/peer-project-volumes.txt): the
// reference's routes under /api/v1/volumes, each a thin mapping request -> one domain call ->
// response. A project is one of our workspaces, the organisation is the calling key's (the platform
// key names it in X-Org-Id), sizes are gigabytes of max_size_bytes. README "Project volumes dialect".

export const BASE = '/api/v1/volumes';
const TAG = 'project-volumes';
/** How many names a create tries for one label (`training-data`, `training-data-2`, …) before a 409. */
const NAME_ATTEMPTS = 100;

const JSON_TYPE = /^application\/([\w.-]+\+)?json/i;

/** The request body as JSON (a JSON Content-Type is required); malformed JSON is a 422 naming the body. */
async function jsonBody(c: Context<RestEnv>): Promise<unknown> {
  const type = c.req.header('content-type') ?? '';
  if (!JSON_TYPE.test(type)) {
    throw ValidationError.field(['body'], 'Request body must be JSON (Content-Type: application/json)', type || null, 'content_type');
  }
  const text = await c.req.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw ValidationError.field(['body'], 'JSON decode error', null, 'json_invalid');
  }
}

/**
 * The volume a path's `:id` names in the caller's organisation. The organisation and the scope are
 * checked first (as /v1 checks them before looking the volume up), so a key without the scope gets
 * 403 whether or not the id exists; the domain call that follows checks everything again.
 * @throws ValidationError (platform key without X-Org-Id), ForbiddenError, NotFoundError
 */
async function volumeRouteOf(rt: Runtime, c: Context<RestEnv>, scope: Scope): Promise<VolumeRoute> {
  const p = c.get('principal');
  const orgId = orgOf(c);
  await enterOrg(rt, p, orgId);
  requireScope(p, scope);
  return volumeRouteById(rt, orgId, parseInput(IdParam, c.req.param(), ['path']).id);
}

/**
 * Creates the volume under the slug of its label as its name, or the first of `<slug>-2`, `<slug>-3`…
 * not taken in the project (names are unique per workspace; the reference's create has no name).
 * A project that is not there (or not visible to the key) is a 422 naming projectId.
 * @throws ValidationError, ForbiddenError, ConflictError
 */
async function createNamed(rt: Runtime, c: Context<RestEnv>, body: z.output<typeof CreateBody>): Promise<Volume> {
  const route = { orgId: orgOf(c), workspaceId: body.projectId };
  const raw = {
    label: body.label,
    volume_type: body.type,
    max_size_bytes: body.sizeGB * BYTES_PER_GB,
    ...(body.description !== undefined && { description: body.description }),
    ...(body.mountPath !== undefined && { mount_path: body.mountPath }),
  };
  const slug = labelSlug(body.label);
  for (let attempt = 1; ; attempt++) {
    const name = attempt === 1 ? slug : `${slug}-${attempt}`;
    try {
      return await createVolume(rt, c.get('principal'), route, { ...raw, name }, ['body']);
    } catch (err) {
      if (err instanceof NotFoundError && err.details.resource_type === 'workspace') {
        throw ValidationError.field(['body', 'projectId'], 'Project not found', body.projectId, 'not_found');
      }
      if (!(err instanceof ConflictError && err.details.field === 'name')) throw err;
      if (attempt >= NAME_ATTEMPTS) {
        throw new ConflictError(`${NAME_ATTEMPTS} volumes with labels like '${body.label}' already exist in this project`, {
          field: 'label',
          value: body.label,
        });
      }
    }
  }
}

// OpenAPI: the reference's operations, tagged project-volumes.

const errors = {
  401: json(ErrorBody, 'UNAUTHENTICATED: missing or invalid API key'),
  403: json(ErrorBody, 'FORBIDDEN: the key lacks the scope in details.requiredPermission'),
  404: json(ErrorBody, 'NOT_FOUND: no such volume in the organisation, or not visible to this key'),
  413: json(ErrorBody, 'PAYLOAD_TOO_LARGE: request body larger than the limit'),
  422: json(ErrorBody, 'VALIDATION_FAILED: details.fields names each bad field ({field, location, message, type})'),
  429: {
    ...json(ErrorBody, 'RATE_LIMITED: this API key has used its requests for the window; retry after Retry-After seconds'),
    headers: retryAfter,
  },
  500: json(ErrorBody, 'INTERNAL_ERROR: unexpected error'),
  503: {
    ...json(
      ErrorBody,
      'UNAVAILABLE: the database could not take the request in time; nothing was written, retry after Retry-After seconds',
    ),
    headers: retryAfter,
  },
};
const conflict = (why: string) => ({ 409: json(ErrorBody, `CONFLICT: ${why}`) });
const AUTH = `Send the API key in X-API-Key (as the reference does) or as Authorization: Bearer. The organisation is the key's; the platform key names it in ${ORG_HEADER} (required then).`;
/** X-Org-Id, documented on every operation (orgOf reads it). */
const OrgHeader = OrgIdHeader;
const security: Record<string, string[]>[] = [{ apiKey: [] }, { bearer: [] }];
const requestBody = <T extends z.ZodType>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });

export function createProjectDialect(rt: Runtime, opts: DialectOptions): OpenAPIHono<RestEnv> {
  const app = createDialectApp(rt, opts, { prefixes: [BASE], errorBody: (e) => projectErrorBody(e) });
  const doc = (def: Parameters<typeof app.openAPIRegistry.registerPath>[0]) =>
    app.openAPIRegistry.registerPath({ ...def, tags: [TAG], security });

  doc({
    method: 'get',
    path: BASE,
    operationId: 'projectListVolumes',
    summary: 'List volumes',
    description: `Every volume of the organisation the key can see (app keys: the volumes mounted for the app, and the shared ones). search looks in the label, name and description; type filters on the volume type (shared: the shared volumes); projectId on the project. Needs volumes:read. ${AUTH}`,
    request: { headers: OrgHeader, query: ListQuery },
    responses: { 200: json(VolumeList, 'The page: count is how many match, volumes the page'), ...errors },
  });
  app.get(BASE, async (c) => {
    const q = parseInput(ListQuery, c.req.query(), ['query']);
    const limit = Math.min(q.limit, MAX_LIMIT);
    const query = parseInput(
      OrgVolumeListQuery,
      {
        limit,
        offset: q.offset,
        search: q.search,
        sort: domainSort(q.sort),
        ...(q.type === 'shared' ? { is_shared: true } : { volume_type: q.type }),
        workspace_id: q.projectId,
      },
      ['query'],
    );
    const page = await listOrgVolumes(rt, c.get('principal'), orgOf(c), query);
    return c.json({ count: page.total, limit, offset: q.offset, volumes: page.items.map(listItemJson) }, 200);
  });

  doc({
    method: 'post',
    path: BASE,
    operationId: 'projectCreateVolume',
    summary: 'Create a new volume',
    description: `Creates a volume in the project (one of our workspaces) with max_size_bytes = sizeGB × 10^9. Its name is the slug of the label ("Training Data" → training-data), or training-data-2, -3… when the project has that name already. A project that does not exist (or that the key cannot see) is a 422 naming projectId. Needs volumes:write. ${AUTH}`,
    request: { headers: OrgHeader, ...requestBody(CreateBody) },
    responses: { 201: json(Created, 'Created'), ...conflict('no free name for this label (after 100 tries)'), ...errors },
  });
  app.post(BASE, async (c) => {
    const body = parseInput(CreateBody, await jsonBody(c), ['body']);
    const volume = await createNamed(rt, c, body);
    return c.json({ volumeId: volume.id }, 201);
  });

  // Before /:id: "shared" is not a volume id.
  doc({
    method: 'get',
    path: `${BASE}/shared`,
    operationId: 'projectListSharedVolumes',
    summary: 'List shared volumes',
    description: `The volumes shared with the whole organisation, whichever project holds them (every key with volumes:read sees them all). Items carry the reference's shorter field list. ${AUTH}`,
    request: { headers: OrgHeader, query: SharedListQuery },
    responses: { 200: json(SharedVolumeList, 'The page: count is how many match, volumes the page'), ...errors },
  });
  app.get(`${BASE}/shared`, async (c) => {
    const q = parseInput(SharedListQuery, c.req.query(), ['query']);
    const limit = Math.min(q.limit, MAX_LIMIT);
    const query = parseInput(VolumeListQuery, { limit, offset: q.offset, search: q.search, sort: domainSort(q.sort) }, ['query']);
    const page = await listSharedVolumes(rt, c.get('principal'), orgOf(c), query);
    return c.json({ count: page.total, limit, offset: q.offset, volumes: page.items.map(sharedItemJson) }, 200);
  });

  doc({
    method: 'get',
    path: `${BASE}/{id}`,
    operationId: 'projectGetVolume',
    summary: 'Get a single volume by ID',
    description: `The full volume object. Another organisation's volume, or (app keys) one not mounted for the app nor shared, is 404. Needs volumes:read. ${AUTH}`,
    request: { headers: OrgHeader, params: IdParam },
    responses: { 200: json(ProjectVolume, 'The volume'), ...errors },
  });
  app.get(`${BASE}/:id`, async (c) => {
    const volume = await getVolume(rt, c.get('principal'), await volumeRouteOf(rt, c, 'volumes:read'));
    return c.json(volumeJson(volume, await volumeOwner(rt, volume)), 200);
  });

  doc({
    method: 'put',
    path: `${BASE}/{id}`,
    operationId: 'projectUpdateVolume',
    summary: 'Update a volume',
    description: `Changes label, description and mountPath (those given). Every other field of the body is ignored: id, _id, owner, ownerId, createdAt, updatedAt, organizationId, projectId, name, type, sizeGb, status, sharing… cannot be overwritten, so a volume read with GET can be sent back changed. Needs volumes:write (app keys: an admin mount). ${AUTH}`,
    request: { headers: OrgHeader, params: IdParam, ...requestBody(UpdateBody) },
    responses: { 200: json(ProjectVolume, 'The updated volume'), ...errors },
  });
  app.put(`${BASE}/:id`, async (c) => {
    const route = await volumeRouteOf(rt, c, 'volumes:write');
    const body = parseInput(UpdateBody, await jsonBody(c), ['body']);
    const raw = {
      ...(body.label !== undefined && { label: body.label }),
      ...(body.description !== undefined && { description: body.description }),
      ...(body.mountPath !== undefined && { mount_path: body.mountPath }),
    };
    const volume = await updateVolume(rt, c.get('principal'), route, raw, ['body']);
    return c.json(volumeJson(volume, await volumeOwner(rt, volume)), 200);
  });

  doc({
    method: 'delete',
    path: `${BASE}/{id}`,
    operationId: 'projectDeleteVolume',
    summary: 'Delete a volume',
    description: `Deletes the volume for good, at once (entries, files, mounts; not restorable: "this action is irreversible"). A volume attached to a workspace (mounted by at least one app) is refused with 409 (details.mountCount): delete its mounts first. Needs volumes:write (app keys: an admin mount). ${AUTH}`,
    request: { headers: OrgHeader, params: IdParam },
    responses: { 204: { description: 'Deleted' }, ...conflict('the volume is attached (details.mountCount)'), ...errors },
  });
  app.delete(`${BASE}/:id`, async (c) => {
    const route = await volumeRouteOf(rt, c, 'volumes:write');
    await deleteVolume(rt, c.get('principal'), route, { permanent: true, refuseIfAttached: true });
    return c.body(null, 204);
  });

  doc({
    method: 'post',
    path: `${BASE}/{id}/sync`,
    operationId: 'projectSyncVolume',
    summary: 'Sync volume contents to S3',
    description: `Starts a backup of the volume into its project's bucket (or answers the one already running): syncJobId is the backup id, whose progress GET /v1/orgs/{org}/workspaces/{projectId}/volumes/{id}/backups/{syncJobId} shows. 409 while the project's bucket is not active. Needs volumes:write (app keys: an admin mount). ${AUTH}`,
    request: { headers: OrgHeader, params: IdParam },
    responses: { 200: json(SyncStarted, 'Sync started'), ...conflict("the project's bucket is not active"), ...errors },
  });
  app.post(`${BASE}/:id/sync`, async (c) => {
    const route = await volumeRouteOf(rt, c, 'volumes:write');
    const { backup } = await startBackup(rt, c.get('principal'), route);
    return c.json({ message: 'Volume sync to S3 initiated', volumeId: route.volumeId, syncJobId: backup.id }, 200);
  });

  doc({
    method: 'post',
    path: `${BASE}/{id}/make-shared`,
    operationId: 'projectMakeVolumeShared',
    summary: 'Make a volume shared across the organization',
    description: `Shares the volume with the whole organisation: every key of it with volumes:read can read it (never write through sharing). Sharing a shared volume changes nothing. Needs volumes:write (app keys: an admin mount). ${AUTH}`,
    request: { headers: OrgHeader, params: IdParam },
    responses: { 200: json(SharedNow, 'Shared'), ...errors },
  });
  app.post(`${BASE}/:id/make-shared`, async (c) => {
    const route = await volumeRouteOf(rt, c, 'volumes:write');
    const volume = await setVolumeShared(rt, c.get('principal'), route, true);
    return c.json({ message: 'Volume is now shared', volumeId: volume.id, isShared: true as const }, 200);
  });

  return app;
}
