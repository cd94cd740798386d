import type { z } from 'zod';
import type { Scope } from '../domain/access/principal.js';
import type { Page } from '../domain/shared/pagination.js';
import type { Runtime } from '../domain/shared/runtime.js';
import { restorableUntil } from '../domain/volumes/lifecycle.js';
import { type VolumeOwner, volumeOwners } from '../domain/volumes/owners.js';
import type { ApiKey, Entry, Lock, Mount, Volume, Workspace } from '../generated/prisma/client.js';
import { type FieldMask, masked } from './field-mask.js';
import type * as S from './schemas.js';

/**
 * Rows → the legacy API's snake_case JSON. The one place field names are decided; each function's
 * return type is the OpenAPI schema's, so the document cannot drift from what is sent.
 */
function iso(d: Date): string;
function iso(d: Date | null): string | null;
function iso(d: Date | null) {
  return d ? d.toISOString() : null;
}

export function workspaceJson(w: Workspace): z.infer<typeof S.Workspace> {
  return {
    workspace_id: w.id,
    name: w.name,
    description: w.description,
    owner_id: w.ownerId,
    subscription_plan_id: w.subscriptionPlanId,
    is_active: w.isActive,
    tags: w.tags,
    region: w.region,
    s3_bucket: w.s3Bucket,
    bucket_status: w.bucketStatus,
    bucket_error: w.bucketError,
    created_at: iso(w.createdAt),
    updated_at: iso(w.updatedAt),
  };
}

/** A volume's JSON; `owner` from `volumeOwners` (the domain), looked up for a whole page at once. */
export function volumeJson(rt: Runtime, v: Volume, owner: VolumeOwner): z.infer<typeof S.Volume> {
  return {
    volume_id: v.id,
    workspace_id: v.workspaceId,
    org_id: v.orgId,
    environment_id: v.environmentId,
    name: v.name,
    description: v.description,
    embedding_model_id: v.embeddingModelId,
    extraction_model_id: v.extractionModelId,
    indexing_mode: v.indexingMode,
    chunking_strategy: v.chunkingStrategy,
    status: v.status,
    tags: v.tags,
    reindex_status: v.reindexStatus,
    reindex_started_at: iso(v.reindexStartedAt),
    reindex_completed_at: iso(v.reindexCompletedAt),
    reindex_progress: (v.reindexProgress ?? {}) as Record<string, unknown>,
    reindex_error: v.reindexError,
    created_by: v.createdBy,
    created_at: iso(v.createdAt),
    updated_at: iso(v.updatedAt),
    max_size_bytes: v.maxSizeBytes === null ? null : Number(v.maxSizeBytes),
    max_file_count: v.maxFileCount,
    max_mounts: v.maxMounts,
    used_bytes: Number(v.usedBytes),
    entry_count: v.entryCount,
    mount_count: v.mountCount,
    last_reconciled_at: iso(v.lastReconciledAt),
    is_shared: v.isShared,
    version: v.version,
    modified_by: v.modifiedBy,
    chunk_size: v.chunkSize,
    chunk_overlap: v.chunkOverlap,
    search_embedding_model_id: v.activeEmbedderId ?? v.embeddingModelId,
    deleted_at: iso(v.deletedAt),
    restorable_until: iso(restorableUntil(rt, v)),
    label: v.label,
    volume_type: v.volumeType,
    mount_path: v.mountPath,
    owner: { id: owner.id, name: owner.name },
  };
}

/**
 * Volumes' JSON with their owners, masked: one owner query for all of them (a list page costs one
 * more statement, not one per volume), none when the mask leaves `owner` out.
 */
export async function volumesJson(rt: Runtime, volumes: readonly Volume[], mask: FieldMask = null) {
  const owners = mask && !mask.has('owner') ? null : await volumeOwners(rt, volumes);
  return volumes.map((v, i) => masked(volumeJson(rt, v, owners?.[i] ?? { id: v.createdBy, name: null, email: null }), mask));
}

/** One volume's JSON with its owner, masked. */
export async function oneVolumeJson(rt: Runtime, volume: Volume, mask: FieldMask = null) {
  const [json] = await volumesJson(rt, [volume], mask);
  return json as z.infer<typeof S.Volume>;
}

export function lockJson(l: Lock): z.infer<typeof S.Lock> {
  return {
    lock_id: l.id,
    volume_id: l.volumeId,
    partition: l.partition,
    lock_type: l.lockType,
    holder_app_id: l.holderAppId,
    holder_execution_id: l.holderExecutionId,
    acquired_at: iso(l.acquiredAt),
    expires_at: iso(l.expiresAt),
    fencing_token: Number(l.fencingToken),
  };
}

export function entryJson(e: Entry): z.infer<typeof S.Entry> {
  return {
    entry_id: e.id,
    volume_id: e.volumeId,
    path: e.path,
    content_type: e.contentType as 'json' | 'text' | 'file',
    content: e.content,
    content_text: e.contentText,
    mime_type: e.mimeType,
    size_bytes: Number(e.sizeBytes),
    schema_id: e.schemaId,
    is_indexed: e.isIndexed,
    indexed_at: iso(e.indexedAt),
    total_chunks: e.totalChunks,
    ttl_seconds: e.ttlSeconds,
    written_by_app_id: e.writtenByAppId,
    written_by_execution_id: e.writtenByExecutionId,
    tags: e.tags,
    metadata: (e.metadata ?? {}) as Record<string, unknown>,
    created_at: iso(e.createdAt),
    updated_at: iso(e.updatedAt),
    version: e.version,
    sha256: e.sha256,
    expires_at: iso(e.expiresAt),
    index_error: e.indexError,
  };
}

export function mountJson(m: Mount): z.infer<typeof S.Mount> {
  return {
    mount_id: m.id,
    volume_id: m.volumeId,
    app_id: m.appId,
    path_pattern: m.pathPattern,
    access_level: m.accessLevel,
    granted_by: m.grantedBy,
    created_at: iso(m.createdAt),
  };
}

export function apiKeyJson(k: ApiKey): z.infer<typeof S.ApiKey> {
  return {
    key_id: k.id,
    org_id: k.orgId,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes as Scope[],
    app_id: k.appId,
    created_by: k.createdBy,
    created_at: iso(k.createdAt),
    last_used_at: iso(k.lastUsedAt),
    revoked_at: iso(k.revokedAt),
  };
}

/** The list envelope: `{total, has_more, next_cursor, <key>: [...]}` in the reference's order. */
export function pageJson<T, K extends string, R>(key: K, page: Page<T>, map: (row: T) => R) {
  return {
    total: page.total,
    has_more: page.hasMore,
    next_cursor: page.nextCursor,
    [key]: page.items.map(map),
  } as { total: number; has_more: boolean; next_cursor: string | null } & { [P in K]: R[] };
}
