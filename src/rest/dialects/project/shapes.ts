import { z } from 'zod';
import { Description, ShortId } from '../../../domain/shared/fields.js';
import { MAX_OFFSET } from '../../../domain/shared/listing.js';
import { queryInt } from '../../../domain/shared/pagination.js';
import { Label, MountPath, VOLUME_TYPES } from '../../../domain/volumes/inputs.js';
import type { VolumeOwner } from '../../../domain/volumes/owners.js';
import { volumeAvailability } from '../../../domain/volumes/status.js';
import type { Volume } from '../../../generated/prisma/client.js';

// The project-volumes dialect's names, units and shapes (/work/shared/reference/peer-project-volumes.txt):
// camelCase JSON, sizes in gigabytes, `count/limit/offset` pages. Request schemas are built from the
// domain's own field schemas (Label, MountPath, Description, VOLUME_TYPES), so a field is refused here
// exactly as /v1 and GraphQL refuse it; only the names and the unit differ.

/** A gigabyte as this dialect counts it: 10^9 bytes (SI, as "gigabytes" says), not a GiB (2^30). */
export const BYTES_PER_GB = 1_000_000_000;
/** The largest sizeGB whose byte count is still exact (max_size_bytes is at most 2^53 - 1). */
export const MAX_SIZE_GB = Math.floor(Number.MAX_SAFE_INTEGER / BYTES_PER_GB);
/** List pages: 20 items unless asked; a larger `limit` is served as this many (the answer's `limit` says so). */
export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 100;

/** `sort` values: a field and an optional direction (ascending by default), as the reference's `createdAt:desc`. */
const SORT_FIELDS = { createdAt: 'created_at', updatedAt: 'updated_at', name: 'name', label: 'label' } as const;
type SortField = keyof typeof SORT_FIELDS;
const SORTS = (Object.keys(SORT_FIELDS) as SortField[]).flatMap((f) => [f, `${f}:asc`, `${f}:desc`] as const);

/** The domain's sort (`created_at:desc`) for a dialect sort (`createdAt:desc`). */
export function domainSort(sort: string | undefined): string | undefined {
  if (sort === undefined) return undefined;
  const [field, dir] = sort.split(':') as [SortField, string | undefined];
  return dir ? `${SORT_FIELDS[field]}:${dir}` : SORT_FIELDS[field];
}

const Search = z.string().max(200).describe('Case-insensitive substring of the label, name or description');
const Limit = queryInt(1, Number.MAX_SAFE_INTEGER)
  .default(DEFAULT_LIMIT)
  .describe(`Number of results to return (default ${DEFAULT_LIMIT}; more than ${MAX_LIMIT} is served as ${MAX_LIMIT})`);
const Offset = queryInt(0, MAX_OFFSET).default(0).describe(`Number of results to skip (default 0, at most ${MAX_OFFSET})`);
const Sort = z
  .enum(SORTS)
  .describe('createdAt, updatedAt, name or label, with :asc (default) or :desc, e.g. createdAt:desc; without it, creation order');

export const ListQuery = z.object({
  search: Search.optional(),
  type: z
    .enum([...VOLUME_TYPES, 'shared'])
    .optional()
    .describe('data, model or workspace (the volume type), or shared (the volumes shared with the organisation)'),
  projectId: ShortId.optional().describe('Only the volumes of this project (one of our workspace ids)'),
  limit: Limit,
  offset: Offset,
  sort: Sort.optional(),
});

export const SharedListQuery = ListQuery.pick({ search: true, limit: true, offset: true, sort: true });

export const IdParam = z.object({ id: z.string().max(255).describe('Volume ID') });

export const CreateBody = z.object({
  projectId: ShortId.describe('Project to attach the volume to: one of our workspace ids'),
  label: Label.describe('Human-readable label for the volume (1-128 characters); the volume name is derived from it'),
  sizeGB: z
    .number()
    .int()
    .min(1)
    .max(MAX_SIZE_GB)
    .describe(`Volume size in gigabytes (10^9 bytes), 1-${MAX_SIZE_GB}: the volume's max_size_bytes`),
  description: Description.optional().describe('Volume description (at most 2000 characters)'),
  type: z.enum(VOLUME_TYPES).default('data').describe('Volume type: data (default), model or workspace'),
  mountPath: MountPath.optional().describe('Mount path inside workspaces (absolute; default: /data/<label-slug>)'),
});

/** What PUT changes; every other field of the body is ignored (protected: it cannot be overwritten). */
export const UPDATABLE = ['label', 'description', 'mountPath'] as const;
export const UpdateBody = z.object({
  label: Label.optional().describe('Human-readable label (the name and mount path stay as they are)'),
  description: Description.optional().describe('Volume description; null clears it'),
  mountPath: MountPath.optional().describe('Mount path inside workspaces (absolute)'),
});

// Responses.

const Timestamp = z.string().describe('ISO 8601, UTC, whole seconds (2025-01-15T10:30:00Z)');
export const STATUSES = ['available', 'bound', 'degraded', 'error'] as const;
const Status = z
  .enum(STATUSES)
  .describe(
    'error: its project bucket failed; degraded: its search index is incomplete; otherwise bound when mounted by at least one app (mount_count > 0), else available',
  );
const SizeGb = z
  .number()
  .nullable()
  .describe('max_size_bytes in gigabytes (10^9 bytes); null for a volume without a size limit (one made through /v1 or GraphQL)');

const itemShape = {
  id: z.string().describe('Volume ID'),
  label: z.string(),
  name: z.string().describe('Unique within the project: the slug of the label at creation (-2, -3… when taken)'),
  description: z.string().nullable(),
  status: Status,
  type: z.enum(VOLUME_TYPES),
  volumeType: z.literal('persistent').describe('Always persistent'),
  sizeGb: SizeGb,
  mountPath: z.string(),
  organizationId: z.string(),
  ownerId: z.string().describe('Who created it: key:<api key id>, or admin for the platform key'),
  projectId: z.string().describe('The workspace holding the volume'),
  isShared: z.boolean().describe('Readable by the whole organisation'),
  createdAt: Timestamp,
  updatedAt: Timestamp,
};

export const VolumeListItem = z.object(itemShape).meta({ id: 'ProjectVolumeListItem' });

export const ProjectVolume = z
  .object({
    id: itemShape.id,
    label: itemShape.label,
    name: itemShape.name,
    description: itemShape.description,
    status: itemShape.status,
    type: itemShape.type,
    volumeType: itemShape.volumeType,
    sizeGb: itemShape.sizeGb,
    mountPath: itemShape.mountPath,
    organizationId: itemShape.organizationId,
    owner: z
      .object({
        id: z.string().describe('= ownerId'),
        name: z.string().nullable().describe("The creating key's name (platform admin for the platform key); null when unknown"),
        email: z.string().nullable().describe('null: the gateway knows API keys, not users'),
      })
      .describe('Who created the volume'),
    ownerId: itemShape.ownerId,
    projectId: itemShape.projectId,
    isShared: itemShape.isShared,
    shared: z.boolean().describe('= isShared'),
    sharedWith: z.array(z.string()).describe('Always []: sharing is organisation-wide (make-shared), never with chosen principals'),
    createdAt: itemShape.createdAt,
    updatedAt: itemShape.updatedAt,
  })
  .meta({ id: 'ProjectVolume' });

export const SharedListItem = z
  .object({
    id: itemShape.id,
    label: itemShape.label,
    name: itemShape.name,
    description: itemShape.description,
    status: itemShape.status,
    type: itemShape.type,
    sizeGb: itemShape.sizeGb,
    organizationId: itemShape.organizationId,
    ownerId: itemShape.ownerId,
    isShared: itemShape.isShared,
    createdAt: itemShape.createdAt,
    updatedAt: itemShape.updatedAt,
  })
  .meta({ id: 'ProjectSharedVolumeListItem' });

const page = <T extends z.ZodType>(item: T) =>
  z.object({
    count: z.number().int().describe('How many volumes match the query (all pages)'),
    limit: z.number().int().describe(`The page size applied (at most ${MAX_LIMIT})`),
    offset: z.number().int(),
    volumes: z.array(item),
  });
export const VolumeList = page(VolumeListItem).meta({ id: 'ProjectVolumeList' });
export const SharedVolumeList = page(SharedListItem).meta({ id: 'ProjectSharedVolumeList' });

export const Created = z.object({ volumeId: z.string() }).meta({ id: 'ProjectVolumeCreated' });
export const SyncStarted = z
  .object({
    message: z.string(),
    volumeId: z.string(),
    syncJobId: z
      .string()
      .describe('Our backup id: GET /v1/orgs/{org}/workspaces/{projectId}/volumes/{id}/backups/{syncJobId} shows its progress'),
  })
  .meta({ id: 'ProjectVolumeSync' });
export const SharedNow = z
  .object({ message: z.string(), volumeId: z.string(), isShared: z.literal(true) })
  .meta({ id: 'ProjectVolumeShared' });

export const ErrorBody = z
  .object({
    code: z.string().describe('UNAUTHENTICATED, FORBIDDEN, NOT_FOUND, CONFLICT, VALIDATION_FAILED, RATE_LIMITED, …'),
    message: z.string(),
    details: z
      .record(z.string(), z.unknown())
      .describe(
        'camelCase: requiredPermission (403), resourceType and resourceId (404), fields [{field, location, message, type}] (VALIDATION_FAILED), …',
      ),
  })
  .meta({ id: 'ProjectVolumeError' });

// Rows -> JSON.

/** Whole seconds, as the reference writes times. */
const time = (d: Date) => `${d.toISOString().slice(0, 19)}Z`;

/** The dialect's status: our problems first (error, degraded), then bound (mounted) or available. */
export function statusOf(v: Pick<Volume, 'status' | 'mountCount' | 'deletedAt'>): (typeof STATUSES)[number] {
  const state = volumeAvailability(v);
  return state === 'attached' ? 'bound' : state;
}

const sizeGbOf = (v: Pick<Volume, 'maxSizeBytes'>) => (v.maxSizeBytes === null ? null : Number(v.maxSizeBytes) / BYTES_PER_GB);

export function listItemJson(v: Volume): z.infer<typeof VolumeListItem> {
  return {
    id: v.id,
    label: v.label,
    name: v.name,
    description: v.description,
    status: statusOf(v),
    type: v.volumeType,
    volumeType: 'persistent',
    sizeGb: sizeGbOf(v),
    mountPath: v.mountPath,
    organizationId: v.orgId,
    ownerId: v.createdBy,
    projectId: v.workspaceId,
    isShared: v.isShared,
    createdAt: time(v.createdAt),
    updatedAt: time(v.updatedAt),
  };
}

export function volumeJson(v: Volume, owner: VolumeOwner): z.infer<typeof ProjectVolume> {
  return {
    id: v.id,
    label: v.label,
    name: v.name,
    description: v.description,
    status: statusOf(v),
    type: v.volumeType,
    volumeType: 'persistent',
    sizeGb: sizeGbOf(v),
    mountPath: v.mountPath,
    organizationId: v.orgId,
    owner: { id: owner.id, name: owner.name, email: owner.email },
    ownerId: v.createdBy,
    projectId: v.workspaceId,
    isShared: v.isShared,
    shared: v.isShared,
    sharedWith: [],
    createdAt: time(v.createdAt),
    updatedAt: time(v.updatedAt),
  };
}

export function sharedItemJson(v: Volume): z.infer<typeof SharedListItem> {
  return {
    id: v.id,
    label: v.label,
    name: v.name,
    description: v.description,
    status: statusOf(v),
    type: v.volumeType,
    sizeGb: sizeGbOf(v),
    organizationId: v.orgId,
    ownerId: v.createdBy,
    isShared: v.isShared,
    createdAt: time(v.createdAt),
    updatedAt: time(v.updatedAt),
  };
}
