import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { CreateMountInput, createMount, deleteMount, listMounts } from '../../domain/mounts/mounts.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { type RestApp, volumeRoute } from '../env.js';
import { fieldsParam, masked, parseFieldMask } from '../field-mask.js';
import { conflictResponse, errorResponses, Message, Mount, MountParams, ok, quotaResponse, VolumeParams } from '../schemas.js';
import { mountJson } from '../serializers.js';

const tags = ['Mounts'];

export function registerMountRoutes(rt: Runtime, app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts',
      operationId: 'listMounts',
      tags,
      summary: 'List mounts for a volume',
      description:
        'Oldest first. App keys see only their own mounts, unless they administer the volume; keep only some fields with fields.',
      request: { params: VolumeParams, query: z.object({ fields: fieldsParam(Mount) }) },
      responses: { 200: ok(z.object({ mounts: z.array(Mount) })), ...errorResponses },
    }),
    async (c) => {
      const mask = parseFieldMask(c.req.valid('query').fields, Mount);
      const mounts = await listMounts(rt, c.get('principal'), volumeRoute(c.req.valid('param')));
      return c.json({ mounts: mounts.map((m) => masked(mountJson(m), mask)) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts',
      operationId: 'createMount',
      tags,
      summary: 'Mount a volume for an app',
      description:
        'Grants app_id access to the paths matching path_pattern (a glob) at access_level. The same app and pattern twice is a 409; a mount past the max_mounts quota is a 507. App keys need an admin mount on the volume.',
      request: {
        params: VolumeParams,
        body: { content: { 'application/json': { schema: CreateMountInput } }, required: true },
      },
      responses: {
        201: ok(z.object({ message: z.string(), mount: Mount }), 'Created'),
        ...conflictResponse,
        ...quotaResponse,
        ...errorResponses,
      },
    }),
    async (c) => {
      const mount = await createMount(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json({ message: 'Mount created successfully', mount: mountJson(mount) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/mounts/{mount_id}',
      operationId: 'deleteMount',
      tags,
      summary: 'Remove a mount',
      description: 'Revokes the access the mount granted. App keys need an admin mount on the volume.',
      request: { params: MountParams },
      responses: { 200: ok(Message), ...errorResponses },
    }),
    async (c) => {
      const { mount_id } = c.req.valid('param');
      await deleteMount(rt, c.get('principal'), volumeRoute(c.req.valid('param')), mount_id);
      return c.json({ message: 'Mount removed successfully' }, 200);
    },
  );
}
