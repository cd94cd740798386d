import { z } from 'zod';
import type { Prisma, Workspace } from '../../generated/prisma/client.js';
import type { Principal } from '../access/principal.js';
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
import type { Runtime } from '../shared/runtime.js';
import { workspaceReadFilter } from './workspaces.js';

/** `status` of a workspace list: whether it is active (`is_active`). */
export const WORKSPACE_STATUSES = ['active', 'inactive'] as const;

export const workspaceFilterShape = {
  ...listFilterShape,
  status: z.enum(WORKSPACE_STATUSES).optional().describe('active or inactive (is_active)'),
};
export const WorkspaceFilters = z.object(workspaceFilterShape);
export type WorkspaceFilters = ListFilters & { status?: (typeof WORKSPACE_STATUSES)[number] | undefined };

export const WorkspaceListQuery = z.object({ ...listPagingShape, ...workspaceFilterShape }).superRefine(refuseOffsetWithCursor);
export type WorkspaceListQuery = WorkspaceFilters & ListPaging;

/** The where of a filtered workspace list, to AND with the visibility filter. */
export function workspaceFilterWhere(f: WorkspaceFilters): Prisma.WorkspaceWhereInput[] {
  const and = searchAndTagsWhere(f) as Prisma.WorkspaceWhereInput[];
  if (f.status) and.push({ isActive: f.status === 'active' });
  return and;
}

/**
 * The `where` of a filtered workspace list (REST and the GraphQL connection). Without `orgId` a
 * platform key sees every organisation's workspaces.
 * @throws NotFoundError (another org), ForbiddenError (no workspaces:read)
 */
export async function workspaceListWhere(
  rt: Runtime,
  p: Principal,
  orgId: string | undefined,
  f: WorkspaceFilters,
): Promise<Prisma.WorkspaceWhereInput> {
  return { AND: [await workspaceReadFilter(rt, p, orgId), ...workspaceFilterWhere(f)] };
}

/** Lists the organisation's workspaces the principal can see, filtered and sorted. @throws NotFoundError, ForbiddenError, ValidationError */
export async function listWorkspaces(rt: Runtime, p: Principal, orgId: string, q: WorkspaceListQuery): Promise<Page<Workspace>> {
  return listPage(q, await workspaceListWhere(rt, p, orgId, q), {
    count: (where) => rt.db.workspace.count({ where }),
    find: (args) => rt.db.workspace.findMany(args as Prisma.WorkspaceFindManyArgs),
  });
}
