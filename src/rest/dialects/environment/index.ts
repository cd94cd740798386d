import type { OpenAPIHono, RouteConfig } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { authorizeOrg } from '../../../domain/access/authorize.js';
import { NotFoundError, ValidationError } from '../../../domain/shared/errors.js';
import { MAX_LIMIT } from '../../../domain/shared/pagination.js';
import type { Runtime } from '../../../domain/shared/runtime.js';
import { parseInput } from '../../../domain/shared/validation.js';
import { deleteVolume } from '../../../domain/volumes/lifecycle.js';
import { listOrgVolumes, OrgVolumeListQuery } from '../../../domain/volumes/listing.js';
import { type VolumeValidation, validateVolume } from '../../../domain/volumes/validation.js';
import { checkNewVolume, createVolume, getVolume, updateVolume, volumeRouteById } from '../../../domain/volumes/volumes.js';
import { environmentWorkspaces } from '../../../domain/workspaces/environments.js';
import type { Volume } from '../../../generated/prisma/client.js';
import type { RestEnv } from '../../env.js';
import { createDialectApp, type DialectOptions, json, OrgIdHeader, orgOf, retryAfter } from '../shared.js';
import { checkReadOnlyRefs, createInput, errorBody, fieldError, updateInput, volumeIdOf, volumeJson } from './mapping.js';
import {
  CreateBody,
  DeleteQuery,
  EnvParams,
  ErrorBody,
  ListQuery,
  MAX_LIST,
  TAG,
  totalCountHeader,
  UpdateBody,
  UUID_PATTERN,
  Validation,
  VolumeParams,
  Volume as VolumeSchema,
} from './schemas.js';

/**
 * `/{envId}/volume…`: only a UUID as the first segment and `volume` as the second reach this app,
 * so `/v1/…`, `/api/…`, `/healthz`, `/blobs/…` never do (they get their own routes or the gateway's 404).
 */
export const BASE = `/:envId{${UUID_PATTERN}}/volume`;
const DOC_BASE = '/{envId}/volume';

const JSON_TYPE = /^application\/([\w.-]+\+)?json/i;

/** The JSON body of a create or update. @throws ValidationError (not JSON, or malformed) */
async function jsonBody(c: Context<RestEnv>): Promise<unknown> {
  const type = c.req.header('content-type');
  if (!JSON_TYPE.test(type ?? '')) {
    throw ValidationError.field(['body'], 'Request body must be JSON (Content-Type: application/json)', type ?? null, 'content_type');
  }
  try {
    return await c.req.json();
  } catch {
    throw ValidationError.field(['body'], 'JSON decode error', {}, 'json_invalid');
  }
}

/** A checked create body as the domain's, or what is wrong with it (with this dialect's names). */
function parseCreate(raw: unknown, orgId: string, envId: string) {
  const body = parseInput(CreateBody, raw, ['body']);
  checkReadOnlyRefs(body, { envId, orgId });
  return createInput(body, envId);
}

/** X-Org-Id, documented on every operation (orgOf reads it). */
const OrgHeader = OrgIdHeader;

/** The error answers every operation can give, in this dialect's body. */
const errors = {
  401: json(ErrorBody, 'UNAUTHENTICATED: missing or invalid Bearer token'),
  403: json(ErrorBody, 'FORBIDDEN: the key lacks the scope in details.requiredPermission'),
  404: json(ErrorBody, 'NOT_FOUND: no such volume in this environment, or not visible to this key (another organisation: always 404)'),
  413: json(ErrorBody, 'PAYLOAD_TOO_LARGE: body larger than 1 MiB'),
  422: json(ErrorBody, 'VALIDATION_FAILED: errors[] names each bad field as sent'),
  429: {
    ...json(ErrorBody, 'RATE_LIMITED: this key used its requests for the window; retry after Retry-After seconds'),
    headers: retryAfter,
  },
  500: json(ErrorBody, 'INTERNAL_SERVER_ERROR: unexpected error'),
  503: { ...json(ErrorBody, 'UNAVAILABLE: the database could not take the request in time; nothing was written'), headers: retryAfter },
};
const conflict = { 409: json(ErrorBody, 'CONFLICT: a duplicate name, a smaller size, or a version other than the current one') };
const body = <T>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });

/**
 * The environment volumes peer API (/work/shared/reference/peer-environment-volumes.txt) over our
 * volumes: `/{envId}/volume` (create, list), `/{envId}/volume/{id}` (get, PUT, DELETE) and
 * `/{envId}/volume/validate`. Mapping and decisions: README, "Peer dialect: environment volumes".
 */
export function createEnvironmentDialect(rt: Runtime, opts: DialectOptions): OpenAPIHono<RestEnv> {
  const app = createDialectApp(rt, opts, { prefixes: [BASE], errorBody: (e) => errorBody(e) });
  const workspaces = environmentWorkspaces(rt);
  const document = (route: RouteConfig) => app.openAPIRegistry.registerPath(route);

  const envOf = (c: Context<RestEnv>) => c.req.param('envId') as string;

  /** The volume `{id}` of the path, if the caller can read it and it is in the path's environment. */
  async function volumeInEnv(c: Context<RestEnv>): Promise<{ route: Awaited<ReturnType<typeof volumeRouteById>>; volume: Volume }> {
    const orgId = orgOf(c);
    const id = c.req.param('id') as string;
    const route = await volumeRouteById(rt, orgId, volumeIdOf(id));
    const volume = await getVolume(rt, c.get('principal'), route);
    if (volume.environmentId !== envOf(c)) throw new NotFoundError('volume', id);
    return { route, volume };
  }

  document({
    method: 'post',
    path: `${DOC_BASE}/validate`,
    operationId: 'validateEnvironmentVolume',
    tags: [TAG],
    summary: 'Validate volume configuration',
    description: `Runs every check of POST /{envId}/volume on the body and writes nothing: 200 {valid, errors} for any body (errors name the fields as sent; a duplicate name is type conflict). Who may not create gets 401/403 as from create.`,
    request: { params: EnvParams, headers: OrgHeader, ...body(CreateBody) },
    responses: { 200: json(Validation, 'The verdict'), ...errors },
  });
  // Before `/{envId}/volume/{id}`, so `validate` is never taken for an id.
  app.post(`${BASE}/validate`, async (c) => {
    const p = c.get('principal');
    const orgId = orgOf(c);
    const envId = envOf(c);
    const text = await c.req.text();
    const domainBody = () => {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        throw ValidationError.field(['body'], 'JSON decode error', {}, 'json_invalid');
      }
      return parseCreate(raw, orgId, envId);
    };
    const workspaceId = await workspaces.find(p, orgId, envId);
    let result: VolumeValidation;
    if (workspaceId) {
      result = await validateVolume(rt, p, { orgId, workspaceId }, domainBody);
    } else {
      // No workspace yet: the create would make one (the same authority), and no name can be taken.
      await authorizeOrg(rt, p, orgId, { scope: 'volumes:write', orgWide: true });
      await authorizeOrg(rt, p, orgId, { scope: 'workspaces:write', orgWide: true });
      result = { valid: true, errors: [] };
      try {
        await checkNewVolume(rt, NO_WORKSPACE, domainBody(), ['body']);
      } catch (err) {
        if (!(err instanceof ValidationError)) throw err;
        result = { valid: false, errors: err.issues };
      }
    }
    return c.json({ valid: result.valid, errors: result.errors.map(fieldError) }, 200);
  });

  document({
    method: 'post',
    path: DOC_BASE,
    operationId: 'createEnvironmentVolume',
    tags: [TAG],
    summary: 'Create a new volume',
    description: `Creates a volume in the environment: 201 with the Volume. It lands in the workspace holding the environment's volumes; the first one of an environment creates the workspace env-{envId} (which needs workspaces:read and workspaces:write besides volumes:write). Names are unique among the environment's live volumes (409).`,
    request: { params: EnvParams, headers: OrgHeader, ...body(CreateBody) },
    responses: { 201: json(VolumeSchema, 'Created'), ...conflict, ...errors },
  });
  app.post(BASE, async (c) => {
    const p = c.get('principal');
    const orgId = orgOf(c);
    const envId = envOf(c);
    // Who may not create volumes at all is refused before anything (a workspace) is made.
    await authorizeOrg(rt, p, orgId, { scope: 'volumes:write', orgWide: true });
    const input = parseCreate(await jsonBody(c), orgId, envId);
    const workspaceId = await workspaces.findOrCreate(p, orgId, envId);
    const volume = await createVolume(rt, p, { orgId, workspaceId }, input, ['body']);
    return c.json(volumeJson(volume), 201);
  });

  document({
    method: 'get',
    path: DOC_BASE,
    operationId: 'listEnvironmentVolumes',
    tags: [TAG],
    summary: 'List all volumes in environment',
    description: `A bare array of the environment's live volumes the key can see (app keys: the mounted and the shared ones), oldest first; [] for an environment without volumes. At most ${MAX_LIST}: X-Total-Count says how many there are, and the optional limit and offset page through more. isDeleted=true lists the deleted ones still restorable instead (needs volumes:write).`,
    request: { params: EnvParams, headers: OrgHeader, query: ListQuery },
    responses: { 200: { ...json(VolumeSchema.array(), 'The volumes'), headers: totalCountHeader }, ...errors },
  });
  app.get(BASE, async (c) => {
    const p = c.get('principal');
    const orgId = orgOf(c);
    const q = parseInput(ListQuery, c.req.query(), ['query']);
    const want = q.limit ?? MAX_LIST;
    const out: Volume[] = [];
    let total = 0;
    let cursor: string | undefined;
    // The domain's org-wide list in keyset pages of at most 200: the first at `offset`, then on by cursor.
    for (;;) {
      const raw = {
        environment_id: envOf(c),
        limit: Math.min(MAX_LIMIT, want - out.length),
        ...(cursor ? { cursor } : q.offset !== undefined && { offset: q.offset }),
        ...(q.isDeleted === 'true' && { status: 'deleted' }),
      };
      const page = await listOrgVolumes(rt, p, orgId, parseInput(OrgVolumeListQuery, raw, ['query']));
      if (cursor === undefined) total = page.total;
      out.push(...page.items);
      if (out.length >= want || !page.hasMore || !page.nextCursor) break;
      cursor = page.nextCursor;
    }
    c.header('X-Total-Count', String(total));
    return c.json(out.map(volumeJson), 200);
  });

  document({
    method: 'get',
    path: `${DOC_BASE}/{id}`,
    operationId: 'getEnvironmentVolume',
    tags: [TAG],
    summary: 'Get volume details',
    description: `The Volume. 404 for a volume of another environment, a deleted one, or one the key cannot see.`,
    request: { params: VolumeParams, headers: OrgHeader },
    responses: { 200: json(VolumeSchema, 'The volume'), ...errors },
  });
  app.get(`${BASE}/:id`, async (c) => {
    const { volume } = await volumeInEnv(c);
    return c.json(volumeJson(volume), 200);
  });

  document({
    method: 'put',
    path: `${DOC_BASE}/{id}`,
    operationId: 'updateEnvironmentVolume',
    tags: [TAG],
    summary: 'Update volume configuration',
    description: `Changes name, size and mountPath (those given); version increments. The size cannot be decreased (409). With version in the body the change is made only at that version (409 otherwise). id, envIdRef and companyIdRef are read-only (422 when they differ). Needs volumes:read and volumes:write (app keys: an admin mount on /**).`,
    request: { params: VolumeParams, headers: OrgHeader, ...body(UpdateBody) },
    responses: { 200: json(VolumeSchema, 'The volume as changed'), ...conflict, ...errors },
  });
  app.put(`${BASE}/:id`, async (c) => {
    const { route, volume } = await volumeInEnv(c);
    const parsed = parseInput(UpdateBody, await jsonBody(c), ['body']);
    checkReadOnlyRefs(parsed, { envId: envOf(c), orgId: route.orgId, volumeId: route.volumeId });
    const updated = await updateVolume(rt, c.get('principal'), route, updateInput(parsed, volume), ['body'], {
      forbidShrink: true,
      ifMatch: parsed.version,
    });
    return c.json(volumeJson(updated), 200);
  });

  document({
    method: 'delete',
    path: `${DOC_BASE}/{id}`,
    operationId: 'deleteEnvironmentVolume',
    tags: [TAG],
    summary: 'Delete a volume',
    description: `204. A soft delete: the volume is gone at once (404 here, in /v1 and GraphQL), listed with isDeleted=true, restorable through /v1 for VOLUME_RETENTION_DAYS, then its data is removed for good; permanent=true removes it now. Needs volumes:read and volumes:write (app keys: an admin mount on /**).`,
    request: { params: VolumeParams, headers: OrgHeader, query: DeleteQuery },
    responses: { 204: { description: 'Deleted' }, ...errors },
  });
  app.delete(`${BASE}/:id`, async (c) => {
    const q = parseInput(DeleteQuery, c.req.query(), ['query']);
    const { route } = await volumeInEnv(c);
    await deleteVolume(rt, c.get('principal'), route, { permanent: q.permanent === 'true' });
    return c.body(null, 204);
  });

  return app;
}

/** A workspace id no workspace has: the duplicate-name check of a workspace not created yet finds nothing. */
const NO_WORKSPACE = '00000000-0000-0000-0000-000000000000';
