import { z } from 'zod';
import { ACCESS_LEVELS, SCOPES } from '../domain/access/principal.js';
import { ExternalId } from '../domain/shared/fields.js';
import { refuseBadText } from '../domain/shared/input-policy.js';
import { CHUNKING_STRATEGIES, INDEXING_MODES } from '../domain/volumes/inputs.js';

/**
 * Response and parameter schemas of the REST layer, used only to describe it in /v1/openapi.json.
 * Request bodies are described by the domain's own input schemas (the ones that validate them).
 */
const Timestamp = z.string().describe('ISO 8601 date-time (UTC)');
const nullable = <T extends z.ZodType>(s: T) => s.nullable();

/** Ids in the path: never NUL or broken Unicode (the input policy; path parameters skip the body and query checks). */
const PathId = z.string().max(255).superRefine(refuseBadText);
export const OrgParams = z.object({ org_id: ExternalId.describe('Organisation id') });
export const WorkspaceParams = OrgParams.extend({ workspace_id: PathId });
export const VolumeParams = WorkspaceParams.extend({ volume_id: PathId });
export const MountParams = VolumeParams.extend({ mount_id: PathId });
export const ApiKeyParams = OrgParams.extend({ key_id: PathId });

export const Workspace = z
  .object({
    workspace_id: z.string(),
    name: z.string(),
    description: nullable(z.string()),
    owner_id: nullable(z.string()),
    subscription_plan_id: nullable(z.string()),
    is_active: z.boolean(),
    tags: z.array(z.string()),
    region: z.string(),
    s3_bucket: z.string(),
    bucket_status: z.enum(['pending', 'active', 'failed']),
    bucket_error: nullable(z.string()).describe('Why provisioning failed, when bucket_status is failed'),
    created_at: Timestamp,
    updated_at: Timestamp,
  })
  .meta({ id: 'Workspace' });

export const Volume = z
  .object({
    volume_id: z.string(),
    workspace_id: z.string(),
    org_id: z.string(),
    environment_id: nullable(z.string()),
    name: z.string(),
    description: nullable(z.string()),
    embedding_model_id: z.string(),
    extraction_model_id: nullable(z.string()),
    indexing_mode: z.enum(INDEXING_MODES),
    chunking_strategy: z.enum(CHUNKING_STRATEGIES),
    status: z.string(),
    tags: z.array(z.string()),
    reindex_status: nullable(z.string()),
    reindex_started_at: nullable(Timestamp),
    reindex_completed_at: nullable(Timestamp),
    reindex_progress: z.record(z.string(), z.unknown()),
    reindex_error: nullable(z.string()),
    created_by: z.string(),
    created_at: Timestamp,
    updated_at: Timestamp,
    max_size_bytes: nullable(z.number().int()).describe('Quota: bytes the volume may hold (null: unlimited)'),
    max_file_count: nullable(z.number().int()).describe('Quota: entries the volume may hold (null: unlimited)'),
    max_mounts: nullable(z.number().int()).describe('Quota: mounts (null: unlimited)'),
    used_bytes: z.number().int(),
    entry_count: z.number().int(),
    mount_count: z.number().int(),
    last_reconciled_at: nullable(Timestamp),
    is_shared: z.boolean().describe('Readable by every key of the organisation (POST …/make-shared, …/make-private)'),
    version: z.number().int().describe('Increments on every change to the volume; send it back in If-Match (or expected_version)'),
    modified_by: nullable(z.string()).describe('The key that made the last change'),
    chunk_size: z.number().int().describe('Largest chunk, in tokens (recursive and fixed chunking)'),
    chunk_overlap: z.number().int().describe('Tokens neighbouring chunks share'),
    search_embedding_model_id: z
      .string()
      .describe('The model searches use now: embedding_model_id, or the previous one until a reindex into it completes'),
    deleted_at: nullable(Timestamp).describe('When the volume was deleted (status deleted); null for a live volume'),
    restorable_until: nullable(Timestamp).describe(
      'A deleted volume can be restored (POST …/restore) until then, after which it is purged; null for a live volume',
    ),
  })
  .meta({ id: 'Volume' });

export const Lock = z
  .object({
    lock_id: z.string(),
    volume_id: z.string(),
    partition: z.string().describe('A path partition (/reports/) guards writes under it; others are advisory'),
    lock_type: z.enum(['exclusive', 'shared']),
    holder_app_id: z.string(),
    holder_execution_id: nullable(z.string()),
    acquired_at: Timestamp,
    expires_at: Timestamp,
    fencing_token: z.number().int().describe('Strictly increasing per partition; present it with writes (X-Fencing-Token)'),
  })
  .meta({ id: 'Lock' });

export const Entry = z
  .object({
    entry_id: z.string(),
    volume_id: z.string(),
    path: z.string(),
    content_type: z.enum(['json', 'text', 'file']),
    content: z.unknown().describe('JSON content (json entries); {filename} for files'),
    content_text: nullable(z.string()),
    mime_type: nullable(z.string()),
    size_bytes: z.number().int(),
    schema_id: nullable(z.string()),
    is_indexed: z.boolean(),
    indexed_at: nullable(Timestamp),
    total_chunks: z.number().int(),
    ttl_seconds: nullable(z.number().int()),
    written_by_app_id: nullable(z.string()),
    written_by_execution_id: nullable(z.string()),
    tags: z.array(z.string()),
    metadata: z.record(z.string(), z.unknown()),
    created_at: Timestamp,
    updated_at: Timestamp,
    version: z.number().int().describe('Increments on every change; send it back in If-Match'),
    sha256: nullable(z.string()).describe('Of the file bytes (file entries)'),
    expires_at: nullable(Timestamp).describe('When ttl_seconds runs out'),
    index_error: nullable(z.string()).describe('Why indexing this entry last failed (null once it succeeds)'),
  })
  .meta({ id: 'Entry' });

export const Mount = z
  .object({
    mount_id: z.string(),
    volume_id: z.string(),
    app_id: z.string(),
    path_pattern: z.string(),
    access_level: z.enum(ACCESS_LEVELS),
    granted_by: z.string(),
    created_at: Timestamp,
  })
  .meta({ id: 'Mount' });

export const ApiKey = z
  .object({
    key_id: z.string(),
    org_id: z.string(),
    name: z.string(),
    prefix: z.string().describe('The first characters of the secret'),
    scopes: z.array(z.enum(SCOPES)),
    app_id: nullable(z.string()),
    created_by: z.string(),
    created_at: Timestamp,
    last_used_at: nullable(Timestamp),
    revoked_at: nullable(Timestamp),
  })
  .meta({ id: 'ApiKey' });

export const listOf = <K extends string, T extends z.ZodType>(key: K, item: T) =>
  z.object({ total: z.number().int(), has_more: z.boolean(), next_cursor: nullable(z.string()) }).extend({
    [key]: z.array(item),
  } as { [P in K]: z.ZodArray<T> });

export const Message = z.object({ message: z.string() }).meta({ id: 'Message' });

export const ErrorEnvelope = z
  .object({
    error: z.string(),
    message: z.string(),
    details: z.record(z.string(), z.unknown()),
    timestamp: z.string(),
    status_code: z.number().int(),
  })
  .meta({ id: 'Error' });

export const ValidationErrorBody = z
  .object({
    detail: z.array(
      z.object({
        loc: z.array(z.union([z.string(), z.number()])),
        msg: z.string(),
        type: z.string(),
        input: z.unknown(),
        ctx: z.record(z.string(), z.unknown()),
      }),
    ),
  })
  .meta({ id: 'HTTPValidationError' });

const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });

/** 409: a name or pattern already taken, or a version/lock conflict. */
export const conflictResponse = { 409: json(ErrorEnvelope, 'Conflicts with the current state (e.g. a duplicate name)') } as const;

/** The error responses every authenticated route can give. */
export const errorResponses = {
  401: json(ErrorEnvelope, 'Missing or invalid credentials'),
  403: json(ErrorEnvelope, 'The key lacks the scope named in details.required_permission'),
  404: json(ErrorEnvelope, 'Not found, or not visible to this key'),
  413: json(ErrorEnvelope, 'Request body larger than the limit'),
  422: json(ValidationErrorBody, 'Validation error naming each bad field'),
  500: json(ErrorEnvelope, 'Unexpected error'),
  503: {
    ...json(
      ErrorEnvelope,
      'SERVICE_UNAVAILABLE: the database could not take the request in time; nothing was written, retry after Retry-After seconds',
    ),
    headers: { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } } },
  },
} as const;

export const ok = <T extends z.ZodType>(schema: T, description = 'Successful Response') => json(schema, description);
