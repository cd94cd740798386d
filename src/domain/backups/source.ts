import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { Prisma } from '../../generated/prisma/client.js';
import { BlobNotFoundError } from '../../storage/blob-store.js';
import { ConflictError, NotFoundError, ValidationError } from '../shared/errors.js';
import { isId } from '../shared/fields.js';
import type { Runtime } from '../shared/runtime.js';
import { backupPrefix, EntryRecord, MANIFEST_KEY, Manifest, parseBackupTimestamp, readObject } from './format.js';

// Finding a backup to restore and reading it back with every checksum verified. A backup that does
// not match is a CONFLICT naming the object and the reason, raised before anything is created.

/** A backup as a restore reads it. */
export interface BackupSource {
  /** How errors name it: the backup id, or volume/timestamp. */
  label: string;
  backupId: string | null;
  bucket: string;
  prefix: string;
  /** Recorded when the backup completed; null when restoring from the bucket alone. */
  manifestSha256: string | null;
}

/** A backup that fails verification. `reason`: checksum_mismatch, object_missing, manifest_invalid, record_invalid, record_count. */
export function corrupt(label: string, reason: string, message: string, details: Record<string, unknown> = {}): ConflictError {
  return new ConflictError(`Backup ${label} failed verification: ${message}. Nothing was restored.`, { reason, backup: label, ...details });
}

export function checksumMismatch(label: string, object: string, expected: string, actual: string): ConflictError {
  return corrupt(label, 'checksum_mismatch', `${object} has sha256 ${actual}, the manifest records ${expected}`, {
    object,
    expected_sha256: expected,
    actual_sha256: actual,
  });
}

/**
 * Finds the snapshot: a completed backup row of the org (by id, or by volume and timestamp), or,
 * with no row, a manifest under backups/{volume}/{timestamp}/ in this workspace's bucket (the
 * bucket alone is enough, e.g. after the database was restored from an older dump).
 * @throws NotFoundError (backup), ValidationError (timestamp), ConflictError (not completed)
 */
export async function findBackupSource(
  rt: Runtime,
  orgId: string,
  workspaceId: string,
  input: { backup_id?: string | undefined; source_volume_id?: string | undefined; timestamp?: string | undefined },
  loc: (string | number)[],
): Promise<BackupSource> {
  const include = { workspace: { select: { s3Bucket: true } } } as const;
  let row: Prisma.BackupGetPayload<{ include: typeof include }> | null;
  if (input.backup_id !== undefined) {
    row = isId(input.backup_id) ? await rt.db.backup.findFirst({ where: { id: input.backup_id, orgId }, include }) : null;
    if (!row) throw new NotFoundError('backup', input.backup_id);
  } else {
    const volumeId = input.source_volume_id ?? '';
    const timestamp = parseBackupTimestamp(input.timestamp ?? '');
    if (!timestamp) {
      throw ValidationError.field(
        [...loc, 'timestamp'],
        'timestamp must be a backup timestamp (20250101T120000000Z) or an ISO 8601 instant',
        input.timestamp,
      );
    }
    const label = `${volumeId}/${timestamp}`;
    if (!isId(volumeId)) throw new NotFoundError('backup', label);
    row = await rt.db.backup.findFirst({ where: { volumeId, timestamp, orgId }, include });
    if (!row) {
      const ws = await rt.db.workspace.findUniqueOrThrow({ where: { id: workspaceId }, select: { s3Bucket: true } });
      const prefix = backupPrefix(volumeId, timestamp);
      if (!(await rt.blobs.head(ws.s3Bucket, prefix + MANIFEST_KEY))) throw new NotFoundError('backup', label);
      return { label, backupId: null, bucket: ws.s3Bucket, prefix, manifestSha256: null };
    }
  }
  if (row.status !== 'completed') {
    throw new ConflictError(`Backup ${row.id} is ${row.status}; only a completed backup can be restored`, {
      backup_id: row.id,
      status: row.status,
    });
  }
  return { label: row.id, backupId: row.id, bucket: row.workspace.s3Bucket, prefix: row.prefix, manifestSha256: row.manifestSha256 };
}

/** Streams an object of the backup. @throws ConflictError (object_missing) */
export async function openBackupObject(rt: Runtime, source: BackupSource, key: string): Promise<Readable> {
  try {
    return (await rt.blobs.get(source.bucket, source.prefix + key)).body;
  } catch (err) {
    if (err instanceof BlobNotFoundError) throw corrupt(source.label, 'object_missing', `${key} is missing`, { object: key });
    throw err;
  }
}

/**
 * Reads the manifest (checked against the sha256 recorded at completion) and every entries part
 * (checked against the manifest), and parses the entry records.
 * @throws ConflictError (the backup fails verification)
 */
export async function readBackup(rt: Runtime, source: BackupSource): Promise<{ manifest: Manifest; records: EntryRecord[] }> {
  const { label } = source;
  const read = async (key: string) => {
    try {
      return await readObject(rt, source.bucket, source.prefix + key);
    } catch (err) {
      if (err instanceof BlobNotFoundError) throw corrupt(label, 'object_missing', `${key} is missing`, { object: key });
      throw err;
    }
  };
  const raw = await read(MANIFEST_KEY);
  if (source.manifestSha256 && raw.sha256 !== source.manifestSha256) {
    throw checksumMismatch(label, MANIFEST_KEY, source.manifestSha256, raw.sha256);
  }
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
      let parsed: ReturnType<typeof EntryRecord.safeParse> | undefined;
      try {
        parsed = EntryRecord.safeParse(JSON.parse(line));
      } catch {
        parsed = undefined;
      }
      if (!parsed?.success)
        throw corrupt(label, 'record_invalid', `${part.key} holds a record this gateway cannot read`, { object: part.key });
      records.push(parsed.data);
    }
  }
  if (records.length !== manifest.entry_count) {
    throw corrupt(label, 'record_count', `the manifest counts ${manifest.entry_count} entries, its parts hold ${records.length}`);
  }
  return { manifest, records };
}

/** The sha256 of a backup object, streamed (file objects no restored entry names still get checked). */
export async function hashBackupObject(rt: Runtime, source: BackupSource, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of await openBackupObject(rt, source, key)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
