import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { PageQuery } from '../../domain/pagination.js';
import {
  CreateVolumeInput,
  createVolume,
  deleteVolume,
  getVolume,
  listVolumes,
  UpdateVolumeInput,
  updateVolume,
} from '../../domain/volumes.js';
import type { RestApp } from '../app.js';
import { conflictResponse, errorResponses, listOf, Message, ok, Volume, VolumeParams, WorkspaceParams } from '../schemas.js';
import { pageJson, volumeJson } from '../serializers.js';

const tags = ['Volumes'];
const body = <T>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });
const VolumeMessage = z.object({ message: z.string(), volume: Volume });

export function registerVolumeRoutes(app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes',
      tags,
      summary: 'List volumes in a workspace',
      request: { params: WorkspaceParams, query: PageQuery },
      responses: { 200: ok(listOf('volumes', Volume)), ...errorResponses },
    }),
    async (c) => {
      const { org_id, workspace_id } = c.req.valid('param');
      const page = await listVolumes(c.get('principal'), org_id, workspace_id, c.req.valid('query'));
      return c.json(pageJson('volumes', page, volumeJson), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes',
      tags,
      summary: 'Create a new volume',
      request: { params: WorkspaceParams, ...body(CreateVolumeInput) },
      responses: { 201: ok(VolumeMessage, 'Created'), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const { org_id, workspace_id } = c.req.valid('param');
      const volume = await createVolume(c.get('principal'), org_id, workspace_id, c.req.valid('json'));
      return c.json({ message: 'Volume created successfully', volume: volumeJson(volume) }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      tags,
      summary: 'Get a volume by ID',
      request: { params: VolumeParams },
      responses: { 200: ok(Volume), ...errorResponses },
    }),
    async (c) => {
      const { org_id, workspace_id, volume_id } = c.req.valid('param');
      return c.json(volumeJson(await getVolume(c.get('principal'), org_id, workspace_id, volume_id)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      tags,
      summary: 'Update a volume',
      request: { params: VolumeParams, ...body(UpdateVolumeInput) },
      responses: { 200: ok(VolumeMessage), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const { org_id, workspace_id, volume_id } = c.req.valid('param');
      const volume = await updateVolume(c.get('principal'), org_id, workspace_id, volume_id, c.req.valid('json'));
      return c.json({ message: 'Volume updated successfully', volume: volumeJson(volume) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}',
      tags,
      summary: 'Delete a volume',
      request: { params: VolumeParams },
      responses: { 200: ok(Message), ...errorResponses },
    }),
    async (c) => {
      const { org_id, workspace_id, volume_id } = c.req.valid('param');
      await deleteVolume(c.get('principal'), org_id, workspace_id, volume_id);
      return c.json({ message: 'Volume deleted successfully' }, 200);
    },
  );
}
