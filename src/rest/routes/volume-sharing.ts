import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import type { Runtime } from '../../domain/shared/runtime.js';
import { listSharedVolumes } from '../../domain/volumes/listing.js';
import { setVolumeShared } from '../../domain/volumes/sharing.js';
import { type RestApp, volumeRoute } from '../env.js';
import { parseFieldMask } from '../field-mask.js';
import { errorResponses, listOf, OrgParams, ok, Volume, VolumeParams, WorkspaceParams } from '../schemas.js';
import { oneVolumeJson, pageJson, volumesJson } from '../serializers.js';
import { VolumeListParams } from './volumes.js';

const tags = ['Volumes'];
const SharingResult = z.object({ message: z.string(), volume_id: z.string(), is_shared: z.boolean(), volume: Volume });
const sharedDescription =
  'Every shared volume of the organisation, whichever workspace holds it: readable (never writable through sharing) by every key of the organisation with volumes:read / entries:read, app keys without a mount included. Address a volume through its own workspace_id. Same filters, sort, paging and field mask as the volume list.';

/**
 * Sharing routes. Registered before the volume routes: `GET …/volumes/shared` would otherwise be
 * taken for a volume whose id is "shared".
 */
export function registerVolumeSharingRoutes(rt: Runtime, app: RestApp): void {
  for (const [path, params, operationId, summary] of [
    ['/orgs/{org_id}/volumes/shared', OrgParams, 'listSharedVolumes', 'List the shared volumes of the organisation'],
    [
      '/orgs/{org_id}/workspaces/{workspace_id}/volumes/shared',
      WorkspaceParams,
      'listWorkspaceSharedVolumes',
      'List the shared volumes available to a workspace',
    ],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'get',
        path,
        operationId,
        tags,
        summary,
        description: sharedDescription,
        request: { params, query: VolumeListParams },
        responses: { 200: ok(listOf('volumes', Volume)), ...errorResponses },
      }),
      async (c) => {
        const param = c.req.valid('param') as { org_id: string; workspace_id?: string };
        const { fields, ...query } = c.req.valid('query');
        const mask = parseFieldMask(fields, Volume);
        const page = await listSharedVolumes(rt, c.get('principal'), param.org_id, query, param.workspace_id);
        const items = await volumesJson(rt, page.items, mask);
        return c.json(
          pageJson('volumes', { ...page, items }, (v) => v),
          200,
        );
      },
    );
  }

  for (const [action, operationId, shared, message] of [
    ['make-shared', 'makeVolumeShared', true, 'Volume is now shared'],
    ['make-private', 'makeVolumePrivate', false, 'Volume is now private'],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/${action}`,
        operationId,
        tags,
        summary: shared ? 'Share a volume with the organisation (read-only)' : 'Stop sharing a volume',
        description: shared
          ? 'Makes the volume readable by every key of the organisation with the read scopes, app keys without a mount included. Idempotent; a change increments version.'
          : 'Only keys that could read the volume before sharing (org keys; app keys through their mounts) keep reading it. Idempotent; a change increments version.',
        request: { params: VolumeParams },
        responses: { 200: ok(SharingResult), ...errorResponses },
      }),
      async (c) => {
        const volume = await setVolumeShared(rt, c.get('principal'), volumeRoute(c.req.valid('param')), shared);
        return c.json({ message, volume_id: volume.id, is_shared: volume.isShared, volume: await oneVolumeJson(rt, volume) }, 200);
      },
    );
  }
}
