import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { z } from 'zod';
import type { Entry, Volume } from '../../generated/prisma/client.js';
import type { Runtime } from '../shared/runtime.js';
import { VOLUME_TYPES } from '../volumes/inputs.js';

// The layout of a volume backup in the workspace bucket, shared by the job that writes it and the
// restore that reads it:
//
//   backups/{volume_id}/{timestamp}/manifest.json            settings, counts, sha256 of every object below
//   backups/{volume_id}/{timestamp}/entries/000001.jsonl     one EntryRecord per line, 500 lines per part
//   backups/{volume_id}/{timestamp}/files/{object id}        the bytes of each file entry, copied as stored
//
// Everything is plain JSON and raw bytes, so a backup is readable without this gateway.

export const BACKUP_FORMAT = 'volumes-gateway-backup';
export const BACKUP_FORMAT_VERSION = 1;
export const MANIFEST_KEY = 'manifest.json';
/** Entry records per `entries/*.jsonl` object. */
export const ENTRIES_PER_PART = 500;

export const backupPrefix = (volumeId: string, timestamp: string) => `backups/${volumeId}/${timestamp}/`;
export const entriesPartKey = (part: number) => `entries/${String(part).padStart(6, '0')}.jsonl`;
/** Entry objects are immutable per key (a rewrite stores a new key), so the key's last segment names the copy. */
export const fileCopyKey = (blobKey: string) => `files/${blobKey.split('/').pop()}`;

/** `2025-01-02T03:04:05.678Z` → `20250102T030405678Z`: sortable, and safe in any object store key. */
export function backupTimestamp(d: Date): string {
  return d.toISOString().replace(/[-:.]/g, '');
}

const COMPACT = /^\d{8}T\d{9}Z$/;

/** A timestamp as the API shows it, or any ISO 8601 instant naming the same millisecond; undefined otherwise. */
export function parseBackupTimestamp(value: string): string | undefined {
  if (COMPACT.test(value)) return value;
  const d = new Date(value);
  return /^\d{4}-\d{2}-\d{2}T/.test(value) && !Number.isNaN(d.getTime()) ? backupTimestamp(d) : undefined;
}

export const sha256Hex = (data: Buffer | string) => createHash('sha256').update(data).digest('hex');

const Sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const Instant = z.iso.datetime();

/** One entry as the snapshot saw it: its content, everything said about it, and where its bytes are. */
export const EntryRecord = z.object({
  path: z.string().min(1).max(1024),
  content_type: z.enum(['json', 'text', 'file']),
  content: z.unknown(),
  content_text: z.string().nullable(),
  mime_type: z.string().nullable(),
  size_bytes: z.number().int().min(0),
  schema_id: z.string().nullable(),
  sha256: Sha256.nullable(),
  /** Key of the file's bytes, relative to the backup prefix (file entries). */
  file: z.string().nullable(),
  ttl_seconds: z.number().int().nullable(),
  expires_at: Instant.nullable(),
  tags: z.array(z.string()),
  metadata: z.record(z.string(), z.unknown()),
  written_by_app_id: z.string().nullable(),
  written_by_execution_id: z.string().nullable(),
  version: z.number().int().min(1),
  created_at: Instant,
  updated_at: Instant,
  source_entry_id: z.string(),
});
export type EntryRecord = z.infer<typeof EntryRecord>;

/** The volume settings a restore re-creates (names as in the create body). */
export const VolumeSettings = z.object({
  description: z.string().nullable(),
  // Absent from backups taken before volumes had them (a restore then gives the defaults).
  label: z.string().optional(),
  volume_type: z.enum(VOLUME_TYPES).optional(),
  mount_path: z.string().optional(),
  environment_id: z.string().nullable(),
  embedding_model_id: z.string(),
  extraction_model_id: z.string().nullable(),
  indexing_mode: z.enum(['auto', 'manual']),
  chunking_strategy: z.enum(['recursive', 'fixed', 'none']),
  chunk_size: z.number().int(),
  chunk_overlap: z.number().int(),
  tags: z.array(z.string()),
  max_size_bytes: z.number().int().nullable(),
  max_file_count: z.number().int().nullable(),
  max_mounts: z.number().int().nullable(),
});
export type VolumeSettings = z.infer<typeof VolumeSettings>;

export const ManifestObject = z.object({
  key: z.string().min(1),
  kind: z.enum(['entries', 'file']),
  sha256: Sha256,
  size: z.number().int().min(0),
  /** Records in an entries part. */
  entries: z.number().int().min(0).optional(),
});
export type ManifestObject = z.infer<typeof ManifestObject>;

export const Manifest = z.object({
  format: z.literal(BACKUP_FORMAT),
  format_version: z.literal(BACKUP_FORMAT_VERSION),
  backup_id: z.string(),
  requested_at: Instant,
  snapshot_at: Instant,
  volume: z.object({
    id: z.string(),
    workspace_id: z.string(),
    org_id: z.string(),
    name: z.string(),
    settings: VolumeSettings,
  }),
  entry_count: z.number().int().min(0),
  entry_bytes: z.number().int().min(0),
  objects: z.array(ManifestObject),
});
export type Manifest = z.infer<typeof Manifest>;

export function settingsOf(v: Volume): VolumeSettings {
  return {
    description: v.description,
    label: v.label,
    volume_type: v.volumeType,
    mount_path: v.mountPath,
    environment_id: v.environmentId,
    embedding_model_id: v.embeddingModelId,
    extraction_model_id: v.extractionModelId,
    indexing_mode: v.indexingMode,
    chunking_strategy: v.chunkingStrategy,
    chunk_size: v.chunkSize,
    chunk_overlap: v.chunkOverlap,
    tags: v.tags,
    max_size_bytes: v.maxSizeBytes === null ? null : Number(v.maxSizeBytes),
    max_file_count: v.maxFileCount,
    max_mounts: v.maxMounts,
  };
}

export function entryRecordOf(e: Entry): EntryRecord {
  return {
    path: e.path,
    content_type: e.contentType as EntryRecord['content_type'],
    content: e.content,
    content_text: e.contentText,
    mime_type: e.mimeType,
    size_bytes: Number(e.sizeBytes),
    schema_id: e.schemaId,
    sha256: e.sha256,
    file: e.blobKey ? fileCopyKey(e.blobKey) : null,
    ttl_seconds: e.ttlSeconds,
    expires_at: e.expiresAt?.toISOString() ?? null,
    tags: e.tags,
    metadata: (e.metadata ?? {}) as Record<string, unknown>,
    written_by_app_id: e.writtenByAppId,
    written_by_execution_id: e.writtenByExecutionId,
    version: e.version,
    created_at: e.createdAt.toISOString(),
    updated_at: e.updatedAt.toISOString(),
    source_entry_id: e.id,
  };
}

/** Stores `data` at `key`, returning what the manifest records of it. */
export async function putObject(rt: Runtime, bucket: string, prefix: string, key: string, data: Buffer, contentType: string) {
  const stored = await rt.blobs.put(bucket, prefix + key, Readable.from([data]), { contentType });
  return { key, sha256: stored.sha256, size: stored.size };
}

/** Reads a whole object (manifests and entry parts, which are bounded) and hashes it. */
export async function readObject(rt: Runtime, bucket: string, key: string): Promise<{ data: Buffer; sha256: string }> {
  const { body } = await rt.blobs.get(bucket, key);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  const data = Buffer.concat(chunks);
  return { data, sha256: sha256Hex(data) };
}
