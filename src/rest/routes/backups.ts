import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { getBackup, listBackups, startBackup } from '../../domain/backups/backups.js';
import { progressJsonOf } from '../../domain/backups/progress.js';
import { RestoreVolumeInput, restoreVolume } from '../../domain/backups/restore.js';
import { bucketOf } from '../../domain/entries/commit.js';
import { PageQuery } from '../../domain/shared/pagination.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import type { Backup as BackupRow } from '../../generated/prisma/client.js';
import { type RestApp, volumeRoute, workspaceRoute } from '../env.js';
import { conflictResponse, errorResponses, listOf, ok, Volume, VolumeParams, WorkspaceParams } from '../schemas.js';
import { oneVolumeJson, pageJson } from '../serializers.js';

const tags = ['Backups'];
const Timestamp = z.string().describe('ISO 8601 date-time (UTC)');

const BackupProgress = z
  .object({
    phase: z.enum(['queued', 'copying_files', 'snapshot', 'done']),
    total: z.number().int().describe('Entries in the snapshot (known once it is taken)'),
    processed: z.number().int().describe('Entries written so far'),
    percent: z.number().describe('0-100; never goes backwards'),
    bytes_copied: z.number().int().describe('File bytes copied so far'),
  })
  .meta({ id: 'BackupProgress' });

export const Backup = z
  .object({
    backup_id: z.string(),
    sync_job_id: z.string().describe('The peer API name of backup_id (the job is the backup)'),
    volume_id: z.string().describe('The volume backed up (a backup outlives it)'),
    workspace_id: z.string(),
    volume_name: z.string(),
    status: z.enum(['queued', 'running', 'completed', 'failed']),
    progress: BackupProgress,
    timestamp: z.string().describe("The last segment of the backup's prefix, e.g. 20250101T120000000Z"),
    location: z.object({ bucket: z.string(), prefix: z.string().describe('backups/{volume_id}/{timestamp}/') }),
    entry_count: z.number().int(),
    file_count: z.number().int(),
    total_bytes: z.number().int().describe('Bytes of every object written (entry records, file copies, manifest)'),
    manifest_sha256: z.string().nullable().describe('sha256 of manifest.json, which lists the sha256 of every other object'),
    error: z.string().nullable(),
    created_by: z.string(),
    created_at: Timestamp,
    started_at: Timestamp.nullable(),
    snapshot_at: Timestamp.nullable().describe('The moment the snapshot reflects'),
    completed_at: Timestamp.nullable(),
  })
  .meta({ id: 'Backup' });

function backupJson(b: BackupRow, bucket: string): z.infer<typeof Backup> {
  const iso = (d: Date | null) => d?.toISOString() ?? null;
  return {
    backup_id: b.id,
    sync_job_id: b.id,
    volume_id: b.volumeId,
    workspace_id: b.workspaceId,
    volume_name: b.volumeName,
    status: b.status,
    progress: progressJsonOf(b),
    timestamp: b.timestamp,
    location: { bucket, prefix: b.prefix },
    entry_count: b.entryCount,
    file_count: b.fileCount,
    total_bytes: Number(b.totalBytes),
    manifest_sha256: b.manifestSha256,
    error: b.error,
    created_by: b.createdBy,
    created_at: b.createdAt.toISOString(),
    started_at: iso(b.startedAt),
    snapshot_at: iso(b.snapshotAt),
    completed_at: iso(b.completedAt),
  };
}

const SyncAccepted = z.object({
  message: z.string(),
  volume_id: z.string(),
  backup_id: z.string(),
  sync_job_id: z.string(),
  status: Backup.shape.status,
  progress: BackupProgress,
  backup: Backup,
});

const RestoreResult = z.object({
  message: z.string(),
  volume: Volume,
  backup_id: z.string(),
  source_volume_id: z.string(),
  snapshot_at: Timestamp,
  restored: z.object({
    entries: z.number().int(),
    files: z.number().int(),
    skipped_expired: z.number().int().describe('Entries whose TTL ran out since the snapshot'),
  }),
});

const BackupParams = VolumeParams.extend({ backup_id: z.string().max(255).describe('Backup id (backup_id, also sync_job_id)') });

/** Backup and restore routes. Registered before the volume routes: /volumes/restore is not a volume id. */
export function registerBackupRoutes(rt: Runtime, app: RestApp): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/sync',
      operationId: 'startVolumeBackup',
      tags,
      summary: 'Back the volume up to the workspace bucket',
      description:
        "Starts a durable job writing a consistent snapshot of the volume (every entry's content and metadata, file bytes, and a manifest with the sha256 of every object) under backups/{volume_id}/{timestamp}/ in the workspace bucket. A backup already queued or running is answered instead of starting another. Needs volumes:write; app keys need an admin mount over the whole volume. Follow it with GET …/backups/{backup_id} or the GraphQL backupProgress subscription.",
      request: { params: VolumeParams },
      responses: { 202: ok(SyncAccepted, 'Accepted'), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const { workspace_id, volume_id } = c.req.valid('param');
      const { backup } = await startBackup(rt, c.get('principal'), volumeRoute(c.req.valid('param')));
      const json = backupJson(backup, await bucketOf(rt, workspace_id));
      return c.json(
        {
          message: 'Volume sync to S3 initiated',
          volume_id,
          backup_id: backup.id,
          sync_job_id: backup.id,
          status: json.status,
          progress: json.progress,
          backup: json,
        },
        202,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/backups',
      operationId: 'listVolumeBackups',
      tags,
      summary: "List a volume's backups",
      description: 'Oldest first, with their status and progress. Needs volumes:read; app keys need an admin mount over the whole volume.',
      request: { params: VolumeParams, query: PageQuery },
      responses: { 200: ok(listOf('backups', Backup)), ...errorResponses },
    }),
    async (c) => {
      const { workspace_id } = c.req.valid('param');
      const page = await listBackups(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('query'));
      const bucket = await bucketOf(rt, workspace_id);
      return c.json(
        pageJson('backups', page, (b) => backupJson(b, bucket)),
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/backups/{backup_id}',
      operationId: 'getBackup',
      tags,
      summary: 'A backup: status, progress and where it is',
      description: 'Needs volumes:read; app keys need an admin mount over the whole volume.',
      request: { params: BackupParams },
      responses: { 200: ok(Backup), ...errorResponses },
    }),
    async (c) => {
      const { workspace_id, backup_id } = c.req.valid('param');
      const backup = await getBackup(rt, c.get('principal'), volumeRoute(c.req.valid('param')), backup_id);
      return c.json(backupJson(backup, await bucketOf(rt, workspace_id)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/restore',
      operationId: 'restoreVolume',
      tags,
      summary: 'Create a new volume from a backup',
      description:
        'Restores a completed backup (backup_id, or source_volume_id + timestamp) into a new volume named `name` in this workspace, with the backed-up settings, entries, metadata and file bytes. Every checksum is verified first; a mismatch or a missing object answers 409 (details.reason checksum_mismatch, object_missing, …) and creates nothing. The restored volume is indexed by a reindex job (indexing_mode auto). Needs volumes:write on the workspace; app keys cannot restore. Mounts and sharing are not restored.',
      request: { params: WorkspaceParams, body: { content: { 'application/json': { schema: RestoreVolumeInput } }, required: true } },
      responses: { 201: ok(RestoreResult, 'Created'), ...conflictResponse, ...errorResponses },
    }),
    async (c) => {
      const r = await restoreVolume(rt, c.get('principal'), workspaceRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json(
        {
          message: 'Volume restored successfully',
          volume: await oneVolumeJson(rt, r.volume),
          backup_id: r.backupId,
          source_volume_id: r.sourceVolumeId,
          snapshot_at: r.snapshotAt.toISOString(),
          restored: { entries: r.entries, files: r.files, skipped_expired: r.skippedExpired },
        },
        201,
      );
    },
  );
}
