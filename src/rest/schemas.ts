import type { OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import { ACCESS_LEVELS, SCOPES } from '../domain/access/principal.js';
import { ExternalId } from '../domain/shared/fields.js';
import { refuseBadText } from '../domain/shared/input-policy.js';
import { CHUNKING_STRATEGIES, INDEXING_MODES, VOLUME_TYPES } from '../domain/volumes/inputs.js';

/**
 * Response and parameter schemas of the REST layer, used only to describe it in /v1/openapi.json.
 * Request bodies are described by the domain's own input schemas (the ones that validate them).
 */
const Timestamp = z.string().describe('ISO 8601 date-time (UTC)');
const nullable = <T extends z.ZodType>(s: T) => s.nullable();

/** Ids in the path: never NUL or broken Unicode (the input policy; path parameters skip the body and query checks). */
const PathId = z.string().max(255).superRefine(refuseBadText);
export const OrgParams = z.object({ org_id: ExternalId.describe('Organisation id') });
export const WorkspaceParams = OrgParams.extend({ workspace_id: PathId.describe('Workspace id') });
export const VolumeParams = WorkspaceParams.extend({ volume_id: PathId.describe('Volume id') });
export const MountParams = VolumeParams.extend({ mount_id: PathId.describe('Mount id') });
export const ApiKeyParams = OrgParams.extend({ key_id: PathId.describe('API key id (key_id, not the secret)') });

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

export const VolumeOwner = z
  .object({
    id: z.string().describe('The creating key as created_by records it: key:<key_id>, or admin for the platform key'),
    name: nullable(z.string()).describe("The creating key's name (platform admin for the platform key); null when unknown"),
  })
  .describe('Who created the volume')
  .meta({ id: 'VolumeOwner' });

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
    label: z.string().describe('Human-readable display label (default: the name at creation)'),
    volume_type: z.enum(VOLUME_TYPES).describe('What the volume holds: data, model or workspace'),
    mount_path: z.string().describe('Absolute path where workspaces mount the volume (default: /data/<slug of the label>)'),
    owner: VolumeOwner,
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

type Registry = OpenAPIHono['openAPIRegistry'];

// Headers. Every header the REST layer reads or writes is described once, under components, and
// referenced where it applies: X-Request-Id (src/http/request-log.ts) on every operation and
// response, the rest by the routes that read or write them. test/openapi.test.ts checks the
// document against the headers the code reads and writes.

/** Response headers, as `#/components/headers/{name}`. */
const responseHeaders = {
  ETag: {
    description: 'The version of the entry or volume as a strong entity tag ("3"); send it back in If-Match to change only that version',
    schema: { type: 'string' as const },
  },
  'X-Request-Id': {
    description:
      "The request's id: the client's X-Request-Id when it is 1-128 visible ASCII characters, else one the gateway made (a UUID). Every log line written for the request carries it.",
    schema: { type: 'string' as const },
  },
  'Retry-After': {
    description: 'Seconds to wait before sending the request again',
    schema: { type: 'integer' as const, minimum: 0 },
  },
};

/** Request headers, as `#/components/parameters/{key}`. */
const headerParameters = {
  RequestId: {
    in: 'header' as const,
    name: 'X-Request-Id',
    required: false,
    description:
      'An id for this request, returned in the X-Request-Id response header and carried by every log line written for it. Kept when it is 1-128 visible ASCII characters; otherwise (or when absent) the gateway makes one.',
    schema: { type: 'string' as const, pattern: '^[\\x21-\\x7e]{1,128}$' },
  },
  IfMatch: {
    in: 'header' as const,
    name: 'If-Match',
    required: false,
    description:
      'Only at this version: "3" (an ETag), W/"3" or 3, else 409 CONFLICT (details.current_version). * : only if it exists (entries: else 409). Any other value: 422.',
    schema: { type: 'string' as const },
  },
  IfNoneMatch: {
    in: 'header' as const,
    name: 'If-None-Match',
    required: false,
    description:
      '* (the only value accepted; anything else is 422): create only, never replace: 409 CONFLICT when a live entry exists at the path.',
    schema: { type: 'string' as const, enum: ['*'] },
  },
  LockId: {
    in: 'header' as const,
    name: 'X-Lock-Id',
    required: false,
    description:
      "The lock_id of the writer's exclusive lock on a path partition covering the path (e.g. /reports/ for /reports/q1.md): while such a lock is live, only writes presenting its id get through; others get 409 LOCKED.",
    schema: { type: 'string' as const },
  },
  FencingToken: {
    in: 'header' as const,
    name: 'X-Fencing-Token',
    required: false,
    description:
      "The fencing_token of the writer's lock on the partition named by X-Lock-Partition (both or neither, else 422): a token older than the newest issued for that partition (or for a partition never locked) is refused with 409 CONFLICT (details.reason stale_fencing_token), so a holder whose lease ran out cannot overwrite its successor's work.",
    schema: { type: 'integer' as const, minimum: 0, maximum: 999_999_999_999_999 },
  },
  LockPartition: {
    in: 'header' as const,
    name: 'X-Lock-Partition',
    required: false,
    description: 'The partition (e.g. /reports/) X-Fencing-Token was issued for (both or neither, else 422).',
    schema: { type: 'string' as const },
  },
  ExecutionId: {
    in: 'header' as const,
    name: 'X-Execution-Id',
    required: false,
    description: 'Recorded as written_by_execution_id; takes precedence over the execution_id field (1-255 characters, trimmed).',
    schema: { type: 'string' as const, maxLength: 255 },
  },
};

/** A request header parameter, by its key in `headerParameters`: for an operation's `parameters`. */
export const headerParam = (key: keyof typeof headerParameters) => ({ $ref: `#/components/parameters/${key}` });

/** The conditional-write headers of entry writes (PUT, upload): versions, lock, fencing token, execution. */
export const entryWriteHeaders = ['IfMatch', 'IfNoneMatch', 'LockId', 'FencingToken', 'LockPartition', 'ExecutionId'].map((k) =>
  headerParam(k as keyof typeof headerParameters),
);
/** What a batch write may state for all its entries: the lock it holds, the fencing token, the execution. */
export const batchWriteHeaders = ['LockId', 'FencingToken', 'LockPartition', 'ExecutionId'].map((k) =>
  headerParam(k as keyof typeof headerParameters),
);
/** What a delete or move of an entry may state: the version it read, the lock it holds, the fencing token. */
export const entryGuardHeaders = ['IfMatch', 'LockId', 'FencingToken', 'LockPartition'].map((k) =>
  headerParam(k as keyof typeof headerParameters),
);

const headerRef = (name: keyof typeof responseHeaders) => ({ $ref: `#/components/headers/${name}` });

/** The ETag response header, for the `headers` of a response that sets it. */
export const etagHeader = { ETag: headerRef('ETag') };

const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });
const retryAfter = { 'Retry-After': headerRef('Retry-After') };

/** 409: a name or pattern already taken, or a version/lock conflict. */
export const conflictResponse = {
  409: json(
    ErrorEnvelope,
    'CONFLICT: conflicts with the current state (a duplicate name, a version or lock conflict); LOCKED: an exclusive lock held by another',
  ),
} as const;

/** 507: the write would take the volume past a quota (max_size_bytes, max_file_count, max_mounts). */
export const quotaResponse = {
  507: json(ErrorEnvelope, 'QUOTA_EXCEEDED: the write would take the volume past a quota (details name it)'),
} as const;

/** The error responses every authenticated route can give. */
export const errorResponses = {
  401: json(ErrorEnvelope, 'AUTHENTICATION_FAILED: missing or invalid credentials'),
  403: json(ErrorEnvelope, 'FORBIDDEN: the key lacks the scope named in details.required_permission'),
  404: json(ErrorEnvelope, 'RESOURCE_NOT_FOUND: not found, or not visible to this key'),
  413: json(ErrorEnvelope, 'PAYLOAD_TOO_LARGE: request body larger than the limit'),
  422: json(ValidationErrorBody, 'Validation error naming each bad field'),
  429: {
    ...json(
      ErrorEnvelope,
      'RATE_LIMITED: rate limited: this API key has used its requests (or upload bytes) for the window (details.limit, max, window_seconds); retry after Retry-After seconds',
    ),
    headers: retryAfter,
  },
  500: json(ErrorEnvelope, 'INTERNAL_SERVER_ERROR: unexpected error'),
  503: {
    ...json(
      ErrorEnvelope,
      'SERVICE_UNAVAILABLE: the database could not take the request in time; nothing was written, retry after Retry-After seconds',
    ),
    headers: retryAfter,
  },
} as const;

/** A successful JSON response, with the response headers it sets (e.g. `etagHeader`). */
export const ok = <T extends z.ZodType>(schema: T, description = 'Successful Response', headers?: Record<string, { $ref: string }>) => ({
  ...json(schema, description),
  ...(headers ? { headers } : {}),
});

/** Top-level tags, in the order documentation shows them; every operation carries one of them. */
const tags = [
  { name: 'Workspaces', description: "An organisation's workspaces: each owns volumes and a blob-store bucket." },
  { name: 'Volumes', description: 'Path-addressed storage spaces in a workspace: settings, quotas, sharing, soft delete and restore.' },
  { name: 'Mounts', description: "Grants of a volume's paths (a glob) to an app, at an access level (read < write < admin)." },
  {
    name: 'Entries',
    description:
      'JSON, text or file entries addressed by path. Writes are conditional on versions (If-Match / If-None-Match, ETag) and guarded by locks (X-Lock-Id) and fencing tokens (X-Fencing-Token + X-Lock-Partition).',
  },
  {
    name: 'Uploads',
    description:
      'Large files in more than one request: resumable uploads (tus 1.0, for tus-js-client and Uppy) and signed upload URLs straight to the bucket, each reserving its size on the volume and committing its entry when complete.',
  },
  { name: 'Search', description: 'Hybrid (vector + full-text), semantic and keyword search, and reindexing.' },
  { name: 'Locks', description: "Leases on a volume's partitions, with fencing tokens that increase strictly per partition." },
  { name: 'Backups', description: 'Consistent snapshots of a volume into the workspace bucket, and new volumes restored from them.' },
  { name: 'API keys', description: 'Org keys and app keys (keys with an app_id, limited to their mounts). Secrets are shown once.' },
];

/** The document-level parts of /v1/openapi.json (the operations come from the routes). */
export const apiDocument = {
  openapi: '3.1.0',
  info: {
    title: 'Volumes Gateway REST API',
    version: '1',
    description:
      'Compatibility layer of the Volumes Gateway. The GraphQL API at /graphql offers the same operations. Every response carries X-Request-Id (the one the client sent, when sane, else a new one).',
  },
  // The gateway's address is known only where it runs (PUBLIC_URL, else http://HOST:PORT), not
  // when this document is printed: a templated server whose default is the development address,
  // first (generators take the first), then the origin that serves this document.
  servers: [
    {
      url: '{base_url}',
      description: "A gateway at its base URL (the gateway's PUBLIC_URL; default http://HOST:PORT)",
      variables: {
        base_url: { default: 'http://127.0.0.1:4000', description: 'Scheme, host, port and any path prefix, without a trailing slash' },
      },
    },
    { url: '/', description: 'The gateway serving this document (at /v1/openapi.json on its origin)' },
  ],
  tags,
  security: [{ bearer: [] }, { apiKey: [] }] as Record<string, string[]>[],
};

/**
 * Registers what the operations refer to (security schemes, shared header parameters and response
 * headers) and documents X-Request-Id, which the server sets on every request and response, on
 * every operation registered so far: call it after the routes.
 */
export function describeApi(registry: Registry): void {
  registry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'An API key (platform, org or app key) as a bearer token: Authorization: Bearer <key>',
  });
  registry.registerComponent('securitySchemes', 'apiKey', {
    type: 'apiKey',
    in: 'header' as const,
    name: 'X-API-Key',
    description: 'The same API key in X-API-Key',
  });
  for (const [key, parameter] of Object.entries(headerParameters)) registry.registerComponent('parameters', key, parameter);
  for (const [name, header] of Object.entries(responseHeaders)) registry.registerComponent('headers', name, header);
  for (const def of registry.definitions) {
    if (def.type !== 'route') continue;
    const route = def.route;
    route.parameters = [headerParam('RequestId'), ...(route.parameters ?? [])] as typeof route.parameters;
    for (const [status, response] of Object.entries(route.responses)) {
      if ('$ref' in response) continue;
      if (response.headers && '_zod' in response.headers)
        throw new Error(`${route.method} ${route.path}: describe response headers as header objects`);
      route.responses[status] = { ...response, headers: { ...response.headers, 'X-Request-Id': headerRef('X-Request-Id') } };
    }
  }
}
