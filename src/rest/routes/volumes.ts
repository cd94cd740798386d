import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { z } from 'zod';
import { parseIfMatch } from '../../domain/entries/rules.js';
import { ValidationError } from '../../domain/shared/errors.js';
import { listPagingShape, refuseOffsetWithCursor } from '../../domain/shared/listing.js';
import type {} from '../../domain/shared/routes.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { parseInput } from '../../domain/shared/validation.js';
import { CreateVolumeInput, UpdateVolumeInput } from '../../domain/volumes/inputs.js';
import { deleteVolume, UndeleteVolumeInput, undeleteVolume } from '../../domain/volumes/lifecycle.js';
import { listVolumes, volumeFilterShape } from '../../domain/volumes/listing.js';
import { validateVolume } from '../../domain/volumes/validation.js';
import { createVolume, getVolume, updateVolume } from '../../domain/volumes/volumes.js';
import { type RestApp, type RestEnv, volumeRoute, workspaceRoute } from '../env.js';
import { fieldsParam, parseFieldMask } from '../field-mask.js';
import {
  conflictResponse,
  errorResponses,
  etagHeader,
  headerParam,
  listOf,
  Message,
  ok,
  ValidationErrorBody,
  Volume,
  VolumeParams,
  WorkspaceParams,
} from '../schemas.js';
import { oneVolumeJson, pageJson, volumesJson } from '../serializers.js';

const tags = ['Volumes'];
const body = <T>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });
const VolumeMessage = z.object({ message: z.string(), volume: Volume });

/** Query of volume lists (here and /volumes/shared): paging, filters, sort and a field mask. */
export const VolumeListParams = z
  .object({ ...listPagingShape, ...volumeFilterShape, fields: fieldsParam(Volume) })
  .superRefine(refuseOffsetWithCursor);
const FieldsQuery = z.object({ fields: fieldsParam(Volume) });
const DeleteQuery = z.object({
  permanent: z
    .enum(['true', 'false'])
    .optional()
    .describe(
      'true: delete now, for good (entries, chunks, mounts, locks, objects); default: hide it, restorable for VOLUME_RETENTION_DAYS',
    ),
});
const VolumeValidation = z.object({
  valid: z.boolean(),
  errors: ValidationErrorBody.shape.detail.describe('What a create with this body would refuse (empty when valid)'),
});

/** The volume's version as an entity tag, for GET and PATCH answers. */
const etagOf = (version: number) => `"${version}"`;

/** If-Match on a volume PATCH: a version ("3", W/"3", 3); `*` only asks that the volume exists. */
function ifMatchVersion(c: Context<RestEnv>): number | undefined {
  const header = c.req.header('if-match');
  const parsed = parseIfMatch(header);
  if (parsed === 'invalid')
    throw ValidationError.field(['header', 'if-match'], 'If-Match must be a volume version such as "3", or *', header);
  return parsed === '*' ? undefined : parsed;
}

export function registerVolumeRoutes(rt: Runtime, app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes',
      operationId: 'listVolumes',
      tags,
      summary: 'List volumes in a workspace',
      description:
        'Filter with search (name, label or description), tags (all of them), volume_type and status (status=deleted lists the deleted volumes still restorable, and needs volumes:write); sort by created_at, updated_at, name or label (:asc or :desc); page with cursor or offset (not both); keep only some fields with fields.',
      request: { params: WorkspaceParams, query: VolumeListParams },
      responses: { 200: ok(listOf('volumes', Volume)), ...errorResponses },
    }),
    async (c) => {
      const { fields, ...query } = c.req.valid('query');
      const mask = parseFieldMask(fields, Volume);
      const page = await listVolumes(rt, c.get('principal'), workspaceRoute(c.req.valid('param')), query);
      const items = await volumesJson(rt, page.items, mask);
      return c.json(
        pageJson('volumes', { ...page, items }, (v) => v),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes',
      operationId: 'createVolume',
      tags,
      summary: 'Create a new volume',
      description:
        'Creates an empty volume in the workspace. A name already taken by a live volume of the workspace is a 409. POST …/volumes/validate runs the same checks without creating anything.',
      request: { params: WorkspaceParams, ...body(CreateVolumeInput) },
      responses: { 201: ok(VolumeMessage, 'Created'), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const volume = await createVolume(rt, c.get('principal'), workspaceRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json({ message: 'Volume created successfully', volume: await oneVolumeJson(rt, volume) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      operationId: 'getVolume',
      tags,
      summary: 'Get a volume by ID',
      description: 'The ETag header carries the volume version, for If-Match on PATCH.',
      request: { params: VolumeParams, query: FieldsQuery },
      responses: { 200: ok(Volume, 'Successful Response', etagHeader), ...errorResponses },
    }),
    async (c) => {
      const mask = parseFieldMask(c.req.valid('query').fields, Volume);
      const volume = await getVolume(rt, c.get('principal'), volumeRoute(c.req.valid('param')));
      c.header('ETag', etagOf(volume.version));
      return c.json(await oneVolumeJson(rt, volume, mask), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      operationId: 'updateVolume',
      tags,
      summary: 'Update a volume',
      description:
        'Changes only the fields given and increments version. With If-Match: "<version>" (or expected_version in the body) the change is made only at that version, else 409. Lowering a quota below current usage is a 409. The ETag header carries the new version.',
      parameters: [headerParam('IfMatch')],
      request: { params: VolumeParams, ...body(UpdateVolumeInput) },
      responses: { 200: ok(VolumeMessage, 'Successful Response', etagHeader), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const expected = ifMatchVersion(c);
      const volume = await updateVolume(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('json'), ['body'], {
        ifMatch: expected,
      });
      c.header('ETag', etagOf(volume.version));
      return c.json({ message: 'Volume updated successfully', volume: await oneVolumeJson(rt, volume) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      operationId: 'deleteVolume',
      tags,
      summary: 'Delete a volume',
      description:
        'Soft delete: the volume disappears at once (404 for it, its entries, search, mounts and locks) and can be restored with POST …/restore for VOLUME_RETENTION_DAYS, after which it is purged. ?permanent=true deletes it now, for good (also one already soft-deleted). Same answer either way.',
      request: { params: VolumeParams, query: DeleteQuery },
      responses: { 200: ok(Message), ...errorResponses },
    }),
    async (c) => {
      const permanent = c.req.valid('query').permanent === 'true';
      await deleteVolume(rt, c.get('principal'), volumeRoute(c.req.valid('param')), { permanent });
      return c.json({ message: 'Volume deleted successfully' }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/restore',
      operationId: 'undeleteVolume',
      tags,
      summary: 'Restore a deleted volume',
      description:
        'Brings back a soft-deleted volume within its retention period, with its entries, mounts and settings; version increments. 404 when it is not deleted, unknown or past retention; 409 when a live volume has taken its name meanwhile (pass {"name": "…"} to restore it under another). List restorable volumes with GET …/volumes?status=deleted. Needs volumes:write (app keys: an admin mount on /**). The ETag header carries the new version.',
      request: {
        params: VolumeParams,
        body: { content: { 'application/json': { schema: UndeleteVolumeInput } }, required: false },
      },
      responses: { 200: ok(VolumeMessage, 'Successful Response', etagHeader), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const volume = await undeleteVolume(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('json') ?? {});
      c.header('ETag', etagOf(volume.version));
      return c.json({ message: 'Volume restored successfully', volume: await oneVolumeJson(rt, volume) }, 200);
    },
  );
}

/**
 * `POST …/volumes/validate`: a dry run of create. The body is documented as the create body but not
 * validated by the route: what create would refuse is the answer (`valid: false`), not a 422.
 */
export function registerVolumeValidationRoute(rt: Runtime, app: RestApp): void {
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/validate',
    operationId: 'validateVolume',
    tags,
    summary: 'Validate a volume create body without creating anything',
    description:
      'Runs exactly the checks of POST …/volumes (schema, duplicate name) and writes nothing. Always 200 for a body create would refuse: {valid: false, errors: [...]} with the 422 items (or the 409 conflict as one such item).',
    request: { params: WorkspaceParams, ...body(CreateVolumeInput) },
    responses: { 200: ok(VolumeValidation), ...errorResponses },
  });
  app.post('/orgs/:org_id/workspaces/:workspace_id/volumes/validate', async (c) => {
    const route = workspaceRoute(parseInput(WorkspaceParams, c.req.param(), ['path']));
    const text = await c.req.text();
    const result = await validateVolume(rt, c.get('principal'), route, () => {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        throw ValidationError.field(['body'], 'JSON decode error', {}, 'json_invalid');
      }
    });
    const errors = result.errors.map((i) => ({ loc: i.loc, msg: i.msg, type: i.type, input: i.input ?? null, ctx: i.ctx ?? {} }));
    return c.json({ valid: result.valid, errors }, 200);
  });
}
