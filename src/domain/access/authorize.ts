import { Prisma, type Volume } from '../../generated/prisma/client.js';
import { NotFoundError } from '../shared/errors.js';
import { isId } from '../shared/fields.js';
import type { VolumeRoute, WorkspaceRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { enterOrg } from './authenticate.js';
import { forbidAppKey, type Principal, requireScope, type Scope } from './principal.js';
import { requireVolumeAdmin, visibleVolumeInOrgSql, visibleVolumeWhere, visibleWorkspaceWhere } from './visibility.js';

// The preamble of every operation on a workspace or a volume, written once: enter the organisation,
// hold the scope, find the resource among those the principal can see, and (app keys) administer
// the whole volume when the operation changes it. Also where a resource known only by id lives.

/**
 * Admits the caller to an organisation with `scope`; `orgWide` operations (keys, workspaces,
 * creating volumes, reconciling) are also closed to app keys, which act only through their mounts.
 * @throws NotFoundError (another org), ForbiddenError
 */
export async function authorizeOrg(rt: Runtime, p: Principal, orgId: string, need: { scope: Scope; orgWide?: boolean }): Promise<void> {
  await enterOrg(rt, p, orgId);
  requireScope(p, need.scope);
  if (need.orgWide) forbidAppKey(p, need.scope);
}

/**
 * The volume a route names, once the caller is allowed to act on it.
 * @throws NotFoundError (another org, not visible, not mounted for the app), ForbiddenError (scope; `volume:admin` for app keys when `admin`)
 */
export async function authorizeVolume(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  need: { scope: Scope; admin?: boolean },
): Promise<Volume> {
  await enterOrg(rt, p, route.orgId);
  requireScope(p, need.scope);
  const volume = await findVisibleVolume(rt, p, route);
  if (need.admin) await requireVolumeAdmin(rt, p, route.volumeId);
  return volume;
}

/**
 * The workspace a route names, once the caller may act in it with `scope`.
 * @throws NotFoundError, ForbiddenError
 */
export async function authorizeWorkspace(rt: Runtime, p: Principal, route: WorkspaceRoute, need: { scope: Scope }) {
  await enterOrg(rt, p, route.orgId);
  requireScope(p, need.scope);
  return findWorkspace(rt, p, route);
}

/** The workspace, if the principal can see it (volume routes are nested under it). @throws NotFoundError */
export async function findWorkspace(rt: Runtime, p: Principal, route: WorkspaceRoute) {
  const { orgId, workspaceId } = route;
  if (!isId(workspaceId)) throw new NotFoundError('workspace', workspaceId);
  const ws = await rt.db.workspace.findFirst({
    where: { ...visibleWorkspaceWhere(p, orgId), orgId, id: workspaceId },
    select: { id: true, s3Bucket: true },
  });
  if (!ws) throw new NotFoundError('workspace', workspaceId);
  return ws;
}

/** What a search needs of the volume it reads (findSearchedVolume). */
export interface SearchedVolume {
  id: string;
  name: string;
  embeddingModelId: string;
  activeEmbedderId: string | null;
}

/**
 * `findVisibleVolume` for a search, which needs four columns of the volume: the same rule, in its
 * SQL form (visibility.ts), as one statement past Prisma's client. The lookup is part of every
 * search's latency; through Prisma it took p50 1.2 / p95 2.7 ms on the embedded database at 100k
 * chunks, this 0.4 / 1.1 ms (BENCHMARKS.md, Search).
 * @throws NotFoundError as findVisibleVolume
 */
export async function findSearchedVolume(rt: Runtime, p: Principal, route: VolumeRoute): Promise<SearchedVolume> {
  const { orgId, workspaceId, volumeId } = route;
  if (!isId(volumeId)) throw new NotFoundError('volume', volumeId);
  const [row] = await rt.sqlInOne([
    Prisma.sql`SELECT v.id, v.name, v.embedding_model_id, v.active_embedder_id FROM volumes v
      WHERE v.id = ${volumeId} AND v.org_id = ${orgId} AND v.workspace_id = ${workspaceId} AND ${visibleVolumeInOrgSql(p, 'v', orgId)}`,
  ]);
  if (!row) throw new NotFoundError('volume', volumeId);
  return {
    id: row.id as string,
    name: row.name as string,
    embeddingModelId: row.embedding_model_id as string,
    activeEmbedderId: (row.active_embedder_id as string | null) ?? null,
  };
}

/**
 * Loads a volume the principal can see, scoped by the org and workspace of the route.
 * @throws NotFoundError when it does not exist, belongs elsewhere, or (app keys) is not mounted for the app
 */
export async function findVisibleVolume(rt: Runtime, p: Principal, route: VolumeRoute): Promise<Volume> {
  const { orgId, workspaceId, volumeId } = route;
  if (!isId(volumeId)) throw new NotFoundError('volume', volumeId);
  const volume = await rt.db.volume.findFirst({ where: { ...visibleVolumeWhere(p, orgId), orgId, workspaceId, id: volumeId } });
  if (!volume) throw new NotFoundError('volume', volumeId);
  return volume;
}

/**
 * The scope check and visibility filter for reading volumes, shared by REST and GraphQL reads.
 * @throws ForbiddenError (no volumes:read)
 */
export function volumeReadFilter(p: Principal, orgId?: string): Prisma.VolumeWhereInput {
  requireScope(p, 'volumes:read');
  return visibleVolumeWhere(p, orgId);
}

/**
 * The route of a live volume known only by id (GraphQL). A soft-deleted volume is not found unless
 * `includeDeleted` (restore and permanent delete, which then apply their own visibility rule). Not a
 * permission check: callers go on through `authorizeVolume` or the like.
 * @throws NotFoundError
 */
export async function locateVolume(rt: Runtime, volumeId: string, opts: { includeDeleted?: boolean } = {}): Promise<VolumeRoute> {
  if (!isId(volumeId)) throw new NotFoundError('volume', volumeId);
  const v = await rt.db.volume.findFirst({
    where: { id: volumeId, ...(opts.includeDeleted ? {} : { deletedAt: null }) },
    select: { orgId: true, workspaceId: true },
  });
  if (!v) throw new NotFoundError('volume', volumeId);
  return { ...v, volumeId };
}

/** The route of a workspace known only by id (GraphQL). Not a permission check. @throws NotFoundError */
export async function locateWorkspace(rt: Runtime, workspaceId: string): Promise<WorkspaceRoute> {
  const ws = isId(workspaceId) ? await rt.db.workspace.findUnique({ where: { id: workspaceId }, select: { orgId: true } }) : null;
  if (!ws) throw new NotFoundError('workspace', workspaceId);
  return { orgId: ws.orgId, workspaceId };
}
