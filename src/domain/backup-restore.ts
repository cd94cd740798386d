import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import { db } from '../db/client.js';
import { Prisma, type Volume } from '../generated/prisma/client.js';
import { BlobNotFoundError, blobs } from '../storage/blob-store.js';
import type { Principal } from './access.js';
import {
  backupPrefix,
  EntryRecord,
  MANIFEST_KEY,
  Manifest,
  type ManifestObject,
  parseBackupTimestamp,
  readObject,
} from './backup-format.js';
import { Description, isId, Name } from './common.js';
import { discardBlobs } from './entry-commit.js';
import { ConflictError, isForeignKeyViolation, isUniqueViolation, NotFoundError, ValidationError } from './errors.js';
import { normaliseEntryPath } from './paths.js';
import { queueReindex } from './reindex.js';
import { parseInput } from './validation.js';
import { authorizeVolumeCreation, checkNewVolume, volumeObjectPrefix } from './volumes.js';

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

interface Source {
  backupId: string | null;
  bucket: string;
  prefix: string;
  manifestSha256: string | null;
}

const corrupt = (label: string, reason: string, message: string, details: Record<string, unknown> = {}) =>
  new ConflictError(`Backup ${label} failed verification: ${message}. Nothing was restored.`, { reason, backup: label, ...details });

function checksumMismatch(label: string, object: string, expected: string, actual: string) {
  return corrupt(label, 'checksum_mismatch', `${object} has sha256 ${actual}, the manifest records ${expected}`, {
    object,
    expected_sha256: expected,
    actual_sha256: actual,
  });
}

/** Finds the snapshot: a completed backup row, or (no row) a manifest in this workspace's bucket. */
async function findSource(orgId: string, workspaceId: string, input: z.output<typeof RestoreVolumeInput>, loc: (string | number)[]) {
  let row: Prisma.BackupGetPayload<{ include: { workspace: { select: { s3Bucket: true } } } }> | null = null;
  const include = { workspace: { select: { s3Bucket: true } } } as const;
  let timestamp: string | undefined;
  if (input.backup_id !== undefined) {
    row = isId(input.backup_id) ? await db.backup.findFirst({ where: { id: input.backup_id, orgId }, include }) : null;
    if (!row) throw new NotFoundError('backup', input.backup_id);
  } else {
    const volumeId = input.source_volume_id as string;
    timestamp = parseBackupTimestamp(input.timestamp as string);
    if (!timestamp) {
      throw ValidationError.field(
        [...loc, 'timestamp'],
        'timestamp must be a backup timestamp (20250101T120000000Z) or an ISO 8601 instant',
        input.timestamp,
      );
    }
    if (!isId(volumeId)) throw new NotFoundError('backup', `${volumeId}/${timestamp}`);
    row = await db.backup.findFirst({ where: { volumeId, timestamp, orgId }, include });
    if (!row) {
      // No record (e.g. the database was restored from an older dump): the bucket alone is the source of truth.
      const ws = await db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { s3Bucket: true } });
      const prefix = backupPrefix(volumeId, timestamp);
      if (!(await blobs.head(ws.s3Bucket, prefix + MANIFEST_KEY))) throw new NotFoundError('backup', `${volumeId}/${timestamp}`);
      return { label: `${volumeId}/${timestamp}`, source: { backupId: null, bucket: ws.s3Bucket, prefix, manifestSha256: null } };
    }
  }
  if (row.status !== 'completed') {
    throw new ConflictError(`Backup ${row.id} is ${row.status}; only a completed backup can be restored`, {
      backup_id: row.id,
      status: row.status,
    });
  }
  const source: Source = { backupId: row.id, bucket: row.workspace.s3Bucket, prefix: row.prefix, manifestSha256: row.manifestSha256 };
  return { label: row.id, source };
}

/** Reads and checks the manifest and every entries part. @throws ConflictError (corrupt backup) */
async function readBackup(label: string, source: Source): Promise<{ manifest: Manifest; records: EntryRecord[] }> {
  const read = async (key: string) => {
    try {
      return await readObject(source.bucket, source.prefix + key);
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw corrupt(label, 'object_missing', `${key} is missing`, { object: key });
      throw err;
    }
  };
  const raw = await read(MANIFEST_KEY);
  if (source.manifestSha256 && raw.sha256 !== source.manifestSha256)
    throw checksumMismatch(label, MANIFEST_KEY, source.manifestSha256, raw.sha256);
  let manifest: Manifest;
  try {
    manifest = Manifest.parse(JSON.parse(raw.data.toString('utf8')));
  } catch {
    throw corrupt(label, 'manifest_invalid', `${MANIFEST_KEY} is not a backup manifest this gateway can read`);
  }
  const records: EntryRecord[] = [];
  for (const part of manifest.objects.filter((o) => o.kind === 'entries')) {
    const { data, sha256 } = await read(part.key);
    if (sha256 !== part.sha256) throw checksumMismatch(label, part.key, part.sha256, sha256);
    for (const line of data.toString('utf8').split('\n')) {
      if (line === '') continue;
      const parsed = EntryRecord.safeParse(JSON.parse(line));
      if (!parsed.success)
        throw corrupt(label, 'record_invalid', `${part.key} holds a record this gateway cannot read`, { object: part.key });
      records.push(parsed.data);
    }
  }
  if (records.length !== manifest.entry_count) {
    throw corrupt(label, 'record_count', `the manifest counts ${manifest.entry_count} entries, its parts hold ${records.length}`);
  }
  return { manifest, records };
}

/** Streams an object through sha256 without keeping it (file objects no restored entry names). */
async function hashObject(bucket: string, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of (await blobs.get(bucket, key)).body) hash.update(chunk as Buffer);
  return hash.digest('hex');
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
  p: Principal,
  orgId: string,
  workspaceId: string,
  raw: unknown,
  loc: (string | number)[] = ['body'],
): Promise<RestoreResult> {
  await authorizeVolumeCreation(p, orgId, workspaceId);
  const input = parseInput(RestoreVolumeInput, raw, loc);
  const { label, source } = await findSource(orgId, workspaceId, input, loc);
  const { manifest, records } = await readBackup(label, source);
  const settings = await checkNewVolume(
    workspaceId,
    { ...manifest.volume.settings, name: input.name, description: input.description ?? manifest.volume.settings.description },
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
  const target = await db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { s3Bucket: true, bucketStatus: true } });
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
      let body: Readable;
      try {
        body = (await blobs.get(source.bucket, source.prefix + r.file)).body;
      } catch (err) {
        if (err instanceof BlobNotFoundError) throw corrupt(label, 'object_missing', `${r.file} is missing`, { object: r.file });
        throw err;
      }
      const stored = await blobs.put(target.s3Bucket, key, body, r.mime_type ? { contentType: r.mime_type } : {});
      if (stored.sha256 !== object.sha256) throw checksumMismatch(label, r.file, object.sha256, stored.sha256);
      if ((r.sha256 && r.sha256 !== stored.sha256) || stored.size !== object.size) {
        throw corrupt(label, 'record_invalid', `the record of ${r.path} disagrees with its file`, { object: r.file });
      }
      blobKeys.set(r, { key, size: stored.size, sha256: stored.sha256 });
    }
    // Every checksum is verified, including files only expired entries (or nothing) refer to.
    for (const [key, object] of files) {
      if (referenced.has(key)) continue;
      let actual: string;
      try {
        actual = await hashObject(source.bucket, source.prefix + key);
      } catch (err) {
        if (err instanceof BlobNotFoundError) throw corrupt(label, 'object_missing', `${key} is missing`, { object: key });
        throw err;
      }
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

    await db.$transaction(
      async (tx) => {
        // Same fields as createVolume writes, plus the counters of the rows inserted with it.
        const volume = await tx.volume.create({
          data: {
            id: volumeId,
            workspaceId,
            orgId,
            name: settings.name,
            environmentId: settings.environment_id ?? null,
            description: settings.description ?? null,
            embeddingModelId: settings.embedding_model_id,
            extractionModelId: settings.extraction_model_id ?? null,
            indexingMode: settings.indexing_mode,
            chunkingStrategy: settings.chunking_strategy,
            chunkSize: settings.chunk_size,
            chunkOverlap: settings.chunk_overlap,
            tags: settings.tags,
            maxSizeBytes:
              settings.max_size_bytes === undefined || settings.max_size_bytes === null ? null : BigInt(settings.max_size_bytes),
            maxFileCount: settings.max_file_count ?? null,
            maxMounts: settings.max_mounts ?? null,
            usedBytes,
            entryCount: rows.length,
            createdBy: p.subject,
            modifiedBy: p.subject,
          },
        });
        for (let i = 0; i < rows.length; i += 500) await tx.entry.createMany({ data: rows.slice(i, i + 500) });
        // One durable job indexes every restored entry (the bulk form of the per-write index job).
        if (volume.indexingMode === 'auto' && rows.length > 0) await queueReindex(tx, volume);
      },
      { timeout: 120_000, maxWait: 20_000 },
    );
  } catch (err) {
    await discardBlobs(target.s3Bucket, staged);
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
    volume: await db.volume.findUniqueOrThrow({ where: { id: volumeId } }),
    backupId: source.backupId ?? manifest.backup_id,
    sourceVolumeId: manifest.volume.id,
    snapshotAt: new Date(manifest.snapshot_at),
    entries: restoring.length,
    files: blobKeys.size,
    skippedExpired: records.length - restoring.length,
  };
}
