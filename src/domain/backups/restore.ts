import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import { Prisma, type Volume } from '../../generated/prisma/client.js';
import type { Principal } from '../access/principal.js';
import { discardBlobs } from '../entries/commit.js';
import { queueReindex } from '../search/reindex.js';
import { ConflictError, isForeignKeyViolation, isUniqueViolation, NotFoundError } from '../shared/errors.js';
import { Description, Name } from '../shared/fields.js';
import { normaliseEntryPath } from '../shared/paths.js';
import type { WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { defaultLabel, defaultMountPath } from '../volumes/inputs.js';
import { authorizeVolumeCreation, checkNewVolume, newVolumeRow, volumeObjectPrefix } from '../volumes/volumes.js';
import type { EntryRecord, ManifestObject, VolumeSettings } from './format.js';
import { checksumMismatch, corrupt, findBackupSource, hashBackupObject, openBackupObject, readBackup } from './source.js';

// Restoring a backup creates a NEW volume. Everything is checked before anything is visible: the
// manifest against the sha256 recorded when the backup completed, every entries part against the
// manifest, and every file as it is copied into the new volume's objects. Only then one transaction
// creates the volume with all its entries and exact counters (and queues its indexing); a failure
// before that removes the copied objects, so a bad backup creates nothing.

export const RestoreVolumeInput = z
  .object({
    backup_id: z.string().max(255).optional().describe('The backup to restore (from …/sync or …/backups)'),
    source_volume_id: z.string().max(255).optional().describe('With timestamp, instead of backup_id: the volume the backup was taken of'),
    timestamp: z
      .string()
      .max(64)
      .optional()
      .describe(
        "With source_volume_id: the backup's timestamp (20250101T120000000Z, its prefix's last segment) or the same instant in ISO 8601",
      ),
    name: Name.describe('Name of the new volume (unique in the workspace)'),
    description: Description.optional().describe("Description of the new volume (default: the backed-up volume's)"),
  })
  .superRefine((v, ctx) => {
    if (v.backup_id !== undefined) return;
    if (v.source_volume_id === undefined || v.timestamp === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: [v.source_volume_id === undefined ? 'backup_id' : 'timestamp'],
        message: 'Give backup_id, or source_volume_id with timestamp',
      });
    }
  });
export type RestoreVolumeInput = z.input<typeof RestoreVolumeInput>;

export interface RestoreResult {
  volume: Volume;
  backupId: string;
  sourceVolumeId: string;
  snapshotAt: Date;
  entries: number;
  files: number;
  /** Entries whose TTL ran out between the snapshot and now: not restored. */
  skippedExpired: number;
}

/**
 * The backed-up settings a restore re-creates. A label or mount path that was only the default of
 * the backed-up name is left out, so the new volume's follow its new name as a new volume's would;
 * one chosen by someone is kept.
 */
function ownSettings(settings: VolumeSettings, sourceName: string): Partial<VolumeSettings> {
  const { label, mount_path, ...rest } = settings;
  const ownLabel = label !== undefined && label !== defaultLabel(sourceName);
  const ownPath = mount_path !== undefined && (label === undefined || mount_path !== defaultMountPath(label));
  return { ...rest, ...(ownLabel && { label }), ...(ownPath && { mount_path }) };
}

/**
 * Creates a new volume in the workspace from a backup (by `backup_id`, or `source_volume_id` +
 * `timestamp`), with the backed-up settings, every entry, its metadata and file bytes. Needs
 * `volumes:write` on the workspace (app keys never). Mounts and sharing are access grants, not
 * data, and are not restored.
 * @throws ValidationError, ForbiddenError, NotFoundError (backup), ConflictError (duplicate name,
 * backup not completed, failed verification: `details.reason` checksum_mismatch, object_missing, …)
 */
export async function restoreVolume(
  rt: Runtime,
  p: Principal,
  route: WorkspaceRoute,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<RestoreResult> {
  const { orgId, workspaceId } = route;
  await authorizeVolumeCreation(rt, p, { orgId, workspaceId });
  const input = parseInput(RestoreVolumeInput, raw, loc);
  const source = await findBackupSource(rt, orgId, workspaceId, input, loc);
  const { label } = source;
  const { manifest, records } = await readBackup(rt, source);
  const settings = await checkNewVolume(
    rt,
    workspaceId,
    {
      ...ownSettings(manifest.volume.settings, manifest.volume.name),
      name: input.name,
      description: input.description ?? manifest.volume.settings.description,
    },
    loc,
  );

  const now = new Date();
  const restoring = records.filter((r) => !r.expires_at || new Date(r.expires_at) > now);
  const paths = new Set<string>();
  for (const r of restoring) {
    if (paths.has(r.path) || normaliseEntryPath(r.path, [...loc, 'backup']) !== r.path) {
      throw corrupt(label, 'record_invalid', `the path ${r.path} is invalid or repeated`);
    }
    paths.add(r.path);
  }
  const files = new Map<string, ManifestObject>(manifest.objects.filter((o) => o.kind === 'file').map((o) => [o.key, o]));
  const target = await rt.db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { s3Bucket: true, bucketStatus: true } });
  if (files.size > 0 && target.bucketStatus !== 'active') {
    throw new ConflictError(`The workspace's bucket is ${target.bucketStatus}; restoring files is possible once it is active`, {
      bucket_status: target.bucketStatus,
    });
  }

  const volumeId = uuidv7();
  const staged: string[] = [];
  const blobKeys = new Map<EntryRecord, { key: string; size: number; sha256: string }>();
  try {
    const referenced = new Set<string>();
    for (const r of restoring) {
      if (r.content_type !== 'file') continue;
      const object = r.file ? files.get(r.file) : undefined;
      if (!r.file || !object) throw corrupt(label, 'record_invalid', `the file of ${r.path} is not in the manifest`);
      referenced.add(r.file);
      const key = `${volumeObjectPrefix(volumeId)}objects/${uuidv7()}`;
      staged.push(key);
      const body = await openBackupObject(rt, source, r.file);
      const stored = await rt.blobs.put(target.s3Bucket, key, body, r.mime_type ? { contentType: r.mime_type } : {});
      if (stored.sha256 !== object.sha256) throw checksumMismatch(label, r.file, object.sha256, stored.sha256);
      if ((r.sha256 && r.sha256 !== stored.sha256) || stored.size !== object.size) {
        throw corrupt(label, 'record_invalid', `the record of ${r.path} disagrees with its file`, { object: r.file });
      }
      blobKeys.set(r, { key, size: stored.size, sha256: stored.sha256 });
    }
    // Every checksum is verified, including files only expired entries (or nothing) refer to.
    for (const [key, object] of files) {
      if (referenced.has(key)) continue;
      const actual = await hashBackupObject(rt, source, key);
      if (actual !== object.sha256) throw checksumMismatch(label, key, object.sha256, actual);
    }

    const rows = restoring.map((r): Prisma.EntryCreateManyInput => {
      const file = blobKeys.get(r);
      return {
        volumeId,
        path: r.path,
        contentType: r.content_type,
        content: r.content === null || r.content === undefined ? Prisma.JsonNull : (r.content as Prisma.InputJsonValue),
        contentText: r.content_text,
        mimeType: r.mime_type,
        sizeBytes: BigInt(file ? file.size : r.size_bytes),
        schemaId: r.schema_id,
        blobKey: file?.key ?? null,
        sha256: file?.sha256 ?? r.sha256,
        ttlSeconds: r.ttl_seconds,
        expiresAt: r.expires_at ? new Date(r.expires_at) : null,
        tags: r.tags,
        metadata: r.metadata as Prisma.InputJsonValue,
        writtenByAppId: r.written_by_app_id,
        writtenByExecutionId: r.written_by_execution_id,
        version: r.version,
        createdAt: new Date(r.created_at),
        updatedAt: new Date(r.updated_at),
      };
    });
    const usedBytes = rows.reduce((n, r) => n + BigInt(r.sizeBytes ?? 0), 0n);

    await rt.db.$transaction(
      async (tx) => {
        // Same fields as createVolume writes, plus the counters of the rows inserted with it.
        const volume = await tx.volume.create({
          data: { ...newVolumeRow(settings, { orgId, workspaceId }, p), id: volumeId, usedBytes, entryCount: rows.length },
        });
        for (let i = 0; i < rows.length; i += 500) await tx.entry.createMany({ data: rows.slice(i, i + 500) });
        // One durable job indexes every restored entry (the bulk form of the per-write index job).
        if (volume.indexingMode === 'auto' && rows.length > 0) await queueReindex(rt, tx, volume);
      },
      { timeout: 120_000, maxWait: 20_000 },
    );
  } catch (err) {
    await discardBlobs(rt, target.s3Bucket, staged);
    if (isUniqueViolation(err)) {
      throw new ConflictError(`A volume named '${settings.name}' already exists in this workspace`, {
        field: 'name',
        value: settings.name,
      });
    }
    if (isForeignKeyViolation(err)) throw new NotFoundError('workspace', workspaceId);
    throw err;
  }
  return {
    volume: await rt.db.volume.findUniqueOrThrow({ where: { id: volumeId } }),
    backupId: source.backupId ?? manifest.backup_id,
    sourceVolumeId: manifest.volume.id,
    snapshotAt: new Date(manifest.snapshot_at),
    entries: restoring.length,
    files: blobKeys.size,
    skippedExpired: records.length - restoring.length,
  };
}
