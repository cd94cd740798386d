import { z } from 'zod';
import type { Prisma, Volume } from '../../generated/prisma/client.js';
import { enterOrg } from '../access/authenticate.js';
import { authorizeWorkspace, findWorkspace } from '../access/authorize.js';
import { type Principal, requireScope } from '../access/principal.js';
import { sharedVolumeWhere, visibleVolumeWhere } from '../access/visibility.js';
import {
  type ListFilters,
  type ListPaging,
  listFilterShape,
  listPage,
  listPagingShape,
  refuseOffsetWithCursor,
  searchAndTagsWhere,
} from '../shared/listing.js';
import type { Page } from '../shared/pagination.js';
import type { OrgRoute, WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { restorableVolumeWhere } from './lifecycle.js';

export const VOLUME_STATUSES = ['active', 'degraded', 'error', 'deleted'] as const;

/** Filters of volume lists: search, tags, sort, and status. */
export const volumeFilterShape = {
  ...listFilterShape,
  status: z.enum(VOLUME_STATUSES).optional().describe('Only volumes in this status'),
};
export const VolumeFilters = z.object(volumeFilterShape);
export type VolumeFilters = ListFilters & { status?: (typeof VOLUME_STATUSES)[number] | undefined };

/** The query of volume list routes (without the REST layer's `fields`). */
export const VolumeListQuery = z.object({ ...listPagingShape, ...volumeFilterShape }).superRefine(refuseOffsetWithCursor);
export type VolumeListQuery = VolumeFilters & ListPaging;

/** The where of a filtered volume list, to AND with a visibility filter. */
export function volumeFilterWhere(f: VolumeFilters): Prisma.VolumeWhereInput[] {
  const and = searchAndTagsWhere(f) as Prisma.VolumeWhereInput[];
  if (f.status) and.push({ status: f.status });
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
