import { z } from 'zod';
import type { Prisma, Volume } from '../../generated/prisma/client.js';
import { enterOrg } from '../access/authenticate.js';
import { authorizeWorkspace, findWorkspace } from '../access/authorize.js';
import { type Principal, requireScope } from '../access/principal.js';
import { sharedVolumeWhere, visibleVolumeWhere } from '../access/visibility.js';
import { ShortId } from '../shared/fields.js';
import {
  type ListFilters,
  type ListPaging,
  listFilterShape,
  listPage,
  listPagingShape,
  refuseOffsetWithCursor,
  SORT_KEYS,
  searchAndTagsWhere,
  sortsOf,
} from '../shared/listing.js';
import type { Page } from '../shared/pagination.js';
import type { OrgRoute, WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { VOLUME_TYPES, type VolumeType } from './inputs.js';
import { restorableVolumeWhere } from './lifecycle.js';

export const VOLUME_STATUSES = ['active', 'degraded', 'error', 'deleted'] as const;
/** Volume lists sort by what every list sorts by, and by label. */
export const VOLUME_SORT_KEYS = [...SORT_KEYS, 'label'] as const;
/** The text columns `search` looks in. */
const SEARCHED = ['name', 'label', 'description'] as const;

/** Filters of volume lists: search, tags, sort, status and type. */
export const volumeFilterShape = {
  ...listFilterShape,
  search: listFilterShape.search.describe('Case-insensitive substring of the name, label or description (% and _ match themselves)'),
  sort: z
    .enum(sortsOf(VOLUME_SORT_KEYS))
    .optional()
    .describe('created_at, updated_at, name or label, with :asc (default) or :desc; without it, creation order'),
  status: z.enum(VOLUME_STATUSES).optional().describe('Only volumes in this status'),
  volume_type: z.enum(VOLUME_TYPES).optional().describe('Only volumes of this type (data, model or workspace)'),
};
export const VolumeFilters = z.object(volumeFilterShape);
export type VolumeFilters = ListFilters & {
  status?: (typeof VOLUME_STATUSES)[number] | undefined;
  volume_type?: VolumeType | undefined;
};

/** The query of volume list routes (without the REST layer's `fields`). */
export const VolumeListQuery = z.object({ ...listPagingShape, ...volumeFilterShape }).superRefine(refuseOffsetWithCursor);
export type VolumeListQuery = VolumeFilters & ListPaging;

/** The where of a filtered volume list, to AND with a visibility filter. */
export function volumeFilterWhere(f: VolumeFilters): Prisma.VolumeWhereInput[] {
  const and = searchAndTagsWhere(f, SEARCHED) as Prisma.VolumeWhereInput[];
  if (f.status) and.push({ status: f.status });
  if (f.volume_type) and.push({ volumeType: f.volume_type });
  return and;
}

/**
 * Which volumes a list starts from: the live ones the principal can see or, for `status=deleted`,
 * the soft-deleted ones it could still restore (that needs `volumes:write`, as the restore does).
 * @throws ForbiddenError (deleted ones without volumes:write)
 */
export function listedVolumeWhere(
  rt: Runtime,
  p: Principal,
  orgId: string | undefined,
  f: Pick<VolumeFilters, 'status'>,
): Prisma.VolumeWhereInput {
  if (f.status !== 'deleted') return visibleVolumeWhere(p, orgId);
  requireScope(p, 'volumes:write');
  return restorableVolumeWhere(rt, p, orgId);
}

function pageOfVolumes(rt: Runtime, q: VolumeListQuery, where: Prisma.VolumeWhereInput): Promise<Page<Volume>> {
  return listPage(q, where, {
    count: (w) => rt.db.volume.count({ where: w }),
    find: (args) => rt.db.volume.findMany(args as Prisma.VolumeFindManyArgs),
  });
}

/** The volumes of a workspace the principal can see, filtered and sorted. @throws NotFoundError, ForbiddenError, ValidationError */
export async function listVolumes(rt: Runtime, p: Principal, route: WorkspaceRoute, q: VolumeListQuery): Promise<Page<Volume>> {
  const { orgId, workspaceId } = route;
  await authorizeWorkspace(rt, p, route, { scope: 'volumes:read' });
  return pageOfVolumes(rt, q, { AND: [listedVolumeWhere(rt, p, orgId, q), { orgId, workspaceId }, ...volumeFilterWhere(q)] });
}

/**
 * The query of an organisation-wide volume list (`listOrgVolumes`): a volume list's paging, filters
 * and sort, narrowed to one workspace, one environment or to shared (or unshared) volumes if asked.
 * Parse it with `parseInput(OrgVolumeListQuery, raw, loc)`; what the caller cannot see is never listed.
 */
export const OrgVolumeListQuery = z
  .object({
    ...listPagingShape,
    ...volumeFilterShape,
    workspace_id: ShortId.optional().describe('Only volumes of this workspace'),
    environment_id: ShortId.optional().describe('Only volumes with this environment_id'),
    is_shared: z.boolean().optional().describe('Only shared (true) or only private (false) volumes'),
  })
  .superRefine(refuseOffsetWithCursor);
export type OrgVolumeListQuery = VolumeListQuery & {
  workspace_id?: string | undefined;
  environment_id?: string | undefined;
  is_shared?: boolean | undefined;
};

/**
 * Every volume of an organisation the principal can see, whichever workspace holds it (org keys and
 * the platform key: all of the org's; app keys: the mounted and the shared ones), filtered, sorted
 * and paged by `limit` with `offset` or `cursor`; `total` counts the filtered list. For APIs that
 * list volumes without naming a workspace. Platform keys must name `orgId`; keys act in their own.
 * @throws NotFoundError (another org), ForbiddenError (volumes:read; volumes:write for status=deleted), ValidationError (cursor)
 */
export async function listOrgVolumes(rt: Runtime, p: Principal, orgId: string, q: OrgVolumeListQuery): Promise<Page<Volume>> {
  await enterOrg(rt, p, orgId);
  requireScope(p, 'volumes:read');
  const narrow: Prisma.VolumeWhereInput[] = [];
  if (q.workspace_id !== undefined) narrow.push({ workspaceId: q.workspace_id });
  if (q.environment_id !== undefined) narrow.push({ environmentId: q.environment_id });
  if (q.is_shared !== undefined) narrow.push({ isShared: q.is_shared });
  return pageOfVolumes(rt, q, { AND: [listedVolumeWhere(rt, p, orgId, q), { orgId }, ...narrow, ...volumeFilterWhere(q)] });
}

/**
 * The shared volumes of an organisation, whichever workspace holds them: every key with
 * `volumes:read` sees them all. Given a workspace (the route under a workspace), it must exist and be
 * visible, but the list is still the organisation's: a shared volume is available to every workspace.
 * @throws NotFoundError, ForbiddenError, ValidationError
 */
export async function listSharedVolumes(
  rt: Runtime,
  p: Principal,
  orgId: string,
  q: VolumeListQuery,
  workspaceId?: string,
): Promise<Page<Volume>> {
  await enterOrg(rt, p, orgId);
  requireScope(p, 'volumes:read');
  if (workspaceId !== undefined) await findWorkspace(rt, p, { orgId, workspaceId });
  return pageOfVolumes(rt, q, { AND: [sharedVolumeWhere(p, orgId), { orgId }, ...volumeFilterWhere(q)] });
}

/**
 * The `where` of GraphQL volume connections, whose paging is the connection's own: a workspace's
 * volumes, or (no workspace) the organisation's shared ones.
 * @throws NotFoundError, ForbiddenError
 */
export async function volumeConnectionWhere(
  rt: Runtime,
  p: Principal,
  route: OrgRoute & { workspaceId: string | null },
  f: VolumeFilters,
): Promise<Prisma.VolumeWhereInput> {
  const { orgId, workspaceId } = route;
  await enterOrg(rt, p, orgId);
  requireScope(p, 'volumes:read');
  if (workspaceId === null) return { AND: [sharedVolumeWhere(p, orgId), { orgId }, ...volumeFilterWhere(f)] };
  await findWorkspace(rt, p, { orgId, workspaceId });
  return { AND: [listedVolumeWhere(rt, p, orgId, f), { orgId, workspaceId }, ...volumeFilterWhere(f)] };
}
