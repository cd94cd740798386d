import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { reconcileWorkspaceFor } from '../../domain/maintenance/maintenance.js';
import { listPagingShape, refuseOffsetWithCursor } from '../../domain/shared/listing.js';
import type {} from '../../domain/shared/routes.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { listWorkspaces, workspaceFilterShape } from '../../domain/workspaces/listing.js';
import {
  CreateWorkspaceInput,
  createWorkspace,
  deleteWorkspace,
  getWorkspace,
  UpdateWorkspaceInput,
  updateWorkspace,
} from '../../domain/workspaces/workspaces.js';
import { type RestApp, workspaceRoute } from '../env.js';
import { fieldsParam, masked, parseFieldMask } from '../field-mask.js';
import { errorResponses, listOf, Message, OrgParams, ok, Workspace, WorkspaceParams } from '../schemas.js';
import { pageJson, workspaceJson } from '../serializers.js';

const tags = ['Workspaces'];
const Usage = z.object({ used_bytes: z.number().int(), entry_count: z.number().int(), mount_count: z.number().int() });
const Reconciliation = z.object({
  volumes: z.array(z.object({ volume_id: z.string(), before: Usage, after: Usage, reconciled_at: z.string() })),
  orphans_removed: z.array(z.string()).describe('Object keys removed: no entry referred to them'),
  orphans_kept: z.number().int().describe('Unreferenced objects too recent to judge (uploads in flight)'),
  missing_objects: z
    .array(z.object({ entry_id: z.string(), path: z.string(), blob_key: z.string() }))
    .describe('Entries whose object is gone: reported, not changed'),
  incomplete_uploads_removed: z
    .number()
    .int()
    .describe(
      'Abandoned uploads removed: temporary files (local store) or incomplete multipart uploads (S3) older than UPLOAD_TEMP_MAX_AGE_MS, left by a crash',
    ),
  incomplete_upload_bytes: z
    .number()
    .int()
    .nullable()
    .describe('Bytes those abandoned uploads held; null when the store cannot tell (S3 does not report part sizes)'),
  upload_sessions: z
    .object({
      expired_removed: z.number().int(),
      stray_removed: z.number().int(),
      unfinished: z.number().int(),
      reserved_bytes: z.number().int(),
    })
    .describe(
      'Resumable and signed-URL uploads: expired sessions ended now (parts removed, reservations freed), stored uploads no session owned any more (removed), and those still unfinished with the bytes they reserve',
    ),
});
const body = <T>(schema: T) => ({ body: { content: { 'application/json': { schema } }, required: true } });
const WorkspaceListParams = z
  .object({ ...listPagingShape, ...workspaceFilterShape, fields: fieldsParam(Workspace) })
  .superRefine(refuseOffsetWithCursor);
const FieldsQuery = z.object({ fields: fieldsParam(Workspace) });

export function registerWorkspaceRoutes(rt: Runtime, app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces',
      operationId: 'listWorkspaces',
      tags,
      summary: 'List Workspaces',
      description:
        'Filter with search (name or description), tags (all of them) and status (active or inactive); sort by created_at, updated_at or name (:asc or :desc); page with cursor or offset (not both); keep only some fields with fields.',
      request: { params: OrgParams, query: WorkspaceListParams },
      responses: { 200: ok(listOf('workspaces', Workspace)), ...errorResponses },
    }),
    async (c) => {
      const { org_id } = c.req.valid('param');
      const { fields, ...query } = c.req.valid('query');
      const mask = parseFieldMask(fields, Workspace);
      const page = await listWorkspaces(rt, c.get('principal'), org_id, query);
      return c.json(
        pageJson('workspaces', page, (w) => masked(workspaceJson(w), mask)),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces',
      operationId: 'createWorkspace',
      tags,
      summary: 'Create Workspace',
      description: 'Creates the workspace and provisions its bucket in the background (bucket_status pending → active | failed).',
      request: { params: OrgParams, ...body(CreateWorkspaceInput) },
      responses: { 201: ok(Workspace, 'Created'), ...errorResponses },
    }),
    async (c) => {
      const { org_id } = c.req.valid('param');
      const ws = await createWorkspace(rt, c.get('principal'), org_id, c.req.valid('json'));
      return c.json(workspaceJson(ws), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}',
      operationId: 'getWorkspace',
      tags,
      summary: 'Get Workspace',
      description: 'The workspace, with its bucket and the bucket provisioning status; keep only some fields with fields.',
      request: { params: WorkspaceParams, query: FieldsQuery },
      responses: { 200: ok(Workspace), ...errorResponses },
    }),
    async (c) => {
      const mask = parseFieldMask(c.req.valid('query').fields, Workspace);
      return c.json(masked(workspaceJson(await getWorkspace(rt, c.get('principal'), workspaceRoute(c.req.valid('param')))), mask), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/orgs/{org_id}/workspaces/{workspace_id}',
      operationId: 'updateWorkspace',
      tags,
      summary: 'Update Workspace',
      description: 'Changes only the fields given.',
      request: { params: WorkspaceParams, ...body(UpdateWorkspaceInput) },
      responses: { 200: ok(Workspace), ...errorResponses },
    }),
    async (c) => {
      const ws = await updateWorkspace(rt, c.get('principal'), workspaceRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json(workspaceJson(ws), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/reconcile',
      operationId: 'reconcileWorkspace',
      tags,
      summary: 'Reconcile usage counters and stored objects (admin)',
      description:
        "Recomputes each volume's used_bytes, entry_count and mount_count (setting last_reconciled_at), removes objects no entry refers to once they are older than 15 minutes, removes abandoned uploads (temporary files or incomplete multipart uploads older than UPLOAD_TEMP_MAX_AGE_MS), and reports entries whose object is missing. Also runs hourly.",
      request: { params: WorkspaceParams },
      responses: { 200: ok(Reconciliation), ...errorResponses },
    }),
    async (c) => {
      const r = await reconcileWorkspaceFor(rt, c.get('principal'), workspaceRoute(c.req.valid('param')));
      return c.json(
        {
          volumes: r.volumes.map((v) => ({
            volume_id: v.volumeId,
            before: { used_bytes: v.before.usedBytes, entry_count: v.before.entryCount, mount_count: v.before.mountCount },
            after: { used_bytes: v.after.usedBytes, entry_count: v.after.entryCount, mount_count: v.after.mountCount },
            reconciled_at: v.reconciledAt.toISOString(),
          })),
          orphans_removed: r.objects.orphansRemoved,
          orphans_kept: r.objects.orphansKept,
          missing_objects: r.objects.missingObjects.map((m) => ({ entry_id: m.entryId, path: m.path, blob_key: m.blobKey })),
          incomplete_uploads_removed: r.objects.incompleteUploadsRemoved,
          incomplete_upload_bytes: r.objects.incompleteUploadBytes,
          upload_sessions: {
            expired_removed: r.objects.uploadSessions.expiredRemoved,
            stray_removed: r.objects.uploadSessions.strayRemoved,
            unfinished: r.objects.uploadSessions.unfinished,
            reserved_bytes: r.objects.uploadSessions.reservedBytes,
          },
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/orgs/{org_id}/workspaces/{workspace_id}',
      operationId: 'deleteWorkspace',
      tags,
      summary: 'Delete Workspace',
      description: 'Deletes the workspace, its volumes and everything under them, and its bucket.',
      request: { params: WorkspaceParams },
      responses: { 200: ok(Message), ...errorResponses },
    }),
    async (c) => {
      await deleteWorkspace(rt, c.get('principal'), workspaceRoute(c.req.valid('param')));
      return c.json({ message: 'Workspace deleted successfully' }, 200);
    },
  );
}
