import { Prisma, type Volume } from '../../generated/prisma/client.js';
import { ForbiddenError } from '../shared/errors.js';
import { MATCH_ALL } from '../shared/path-patterns.js';
import type { Runtime } from '../shared/runtime.js';
import { isAppKey, type Principal } from './principal.js';

// What a principal can see: the `where` builders every read starts from, so a rule about
// visibility (org isolation, app mounts, soft delete) is written once.

/**
 * Volumes that exist for their users: not soft-deleted. A deleted volume is hidden from every
 * access path (gets, lists, entries, search, mounts, locks, subscriptions) because they all start
 * from the builders below; only `deletedVolumeWhere` (restore, permanent delete, the deleted list)
 * reaches past it.
 */
const LIVE: Prisma.VolumeWhereInput = { deletedAt: null };

/**
 * The live volumes an app key reaches: those mounted for its app, and every shared volume of its org
 * (sharing grants read access to all paths, never write; see entry-access.ts).
 */
function appVolumeWhere(appId: string): Prisma.VolumeWhereInput {
  return { AND: [LIVE, { OR: [{ mounts: { some: { appId } } }, { isShared: true }] }] };
}

/**
 * The volumes a principal can see at all: its org's live ones, narrowed for app keys to mounted and
 * shared ones. Returned as an `AND`, so callers spreading more conditions (`{ ...visible, orgId }`)
 * narrow it and can never widen it to another organisation or to deleted volumes.
 */
export function visibleVolumeWhere(p: Principal, orgId?: string): Prisma.VolumeWhereInput {
  const and: Prisma.VolumeWhereInput[] = [LIVE];
  if (p.kind === 'key') and.push({ orgId: p.orgId });
  else if (orgId) and.push({ orgId });
  if (isAppKey(p)) and.push(appVolumeWhere(p.appId));
  return { AND: and };
}

/**
 * The soft-deleted volumes a principal may find again (to restore them, delete them for good, or
 * list them): its org's, and for app keys only those it administered whole (an `admin` mount on
 * `/**
 * `visibleWorkspaceWhere` and `visibleVolumeWhere` as SQL over a table alias, for compiled reads
 * (src/graphql/compiled/): only for principals whose view is their whole organisation (org keys),
 * where the rule is "this org's rows; volumes live". Undefined for app keys (mount-based) and the
 * platform key, which keep the Prisma forms above. test/graphql-compiled.test.ts holds the two forms
 * to the same answers.
 */
export function orgWideWorkspaceSql(p: Principal, alias: string): Prisma.Sql | undefined {
  if (p.kind !== 'key' || isAppKey(p)) return undefined;
  return Prisma.sql`${Prisma.raw(alias)}.org_id = ${p.orgId}`;
}

export function orgWideVolumeSql(p: Principal, alias: string): Prisma.Sql | undefined {
  const org = orgWideWorkspaceSql(p, alias);
  return org && Prisma.sql`${Prisma.raw(alias)}.deleted_at IS NULL AND ${org}`;
}

/**
 * For a volume row already loaded through a visibility filter (a nested GraphQL field's parent):
 * whether its contents (entries, locks) may be listed. Deleted volumes list nothing; and, belt and
 * braces, a key never lists another organisation's volume however it was reached.
 */
export function contentsListable(p: Principal, v: Pick<Volume, 'orgId' | 'deletedAt'>): boolean {
  return !v.deletedAt && (p.kind !== 'key' || v.orgId === p.orgId);
}

/**`, as deleting needs). To anyone else a deleted volume does not exist. An `AND`, as above;
 * retention is the caller's condition (volume-lifecycle.ts).
 */
export function deletedVolumeWhere(p: Principal, orgId?: string): Prisma.VolumeWhereInput {
  const and: Prisma.VolumeWhereInput[] = [{ deletedAt: { not: null } }];
  if (p.kind === 'key') and.push({ orgId: p.orgId });
  else if (orgId) and.push({ orgId });
  if (isAppKey(p)) and.push({ mounts: { some: wholeVolumeAdminMount(p.appId) } });
  return { AND: and };
}

/**
 * The shared volumes a principal can see: with `volumes:read`, every key of the organisation sees
 * all of them, whichever workspace holds them (an `AND`, as above).
 */
export function sharedVolumeWhere(p: Principal, orgId?: string): Prisma.VolumeWhereInput {
  return { AND: [visibleVolumeWhere(p, orgId), { isShared: true }] };
}

/**
 * The workspaces a principal can see: its org's, or for app keys those holding a volume it can see
 * (mounted for it or shared). An `AND`, as above.
 */
export function visibleWorkspaceWhere(p: Principal, orgId?: string): Prisma.WorkspaceWhereInput {
  const and: Prisma.WorkspaceWhereInput[] = [];
  if (p.kind === 'key') and.push({ orgId: p.orgId });
  else if (orgId) and.push({ orgId });
  if (isAppKey(p)) and.push({ volumes: { some: appVolumeWhere(p.appId) } });
  return { AND: and };
}

/**
 * What makes an app the admin of a whole volume: an `admin` mount over every path. An admin mount
 * on a sub-tree administers entries there, but changing the volume or granting mounts would let it
 * widen its own reach, so those need the whole volume.
 */
export function wholeVolumeAdminMount(appId: string): Prisma.MountWhereInput {
  return { appId, accessLevel: 'admin', pathPattern: MATCH_ALL };
}

/**
 * For an app key, checks that it administers the whole volume. Other principals are governed by
 * scopes alone.
 * @throws ForbiddenError (`volume:admin`)
 */
export async function requireVolumeAdmin(rt: Runtime, p: Principal, volumeId: string): Promise<void> {
  if (!isAppKey(p)) return;
  if ((await rt.db.mount.count({ where: { volumeId, ...wholeVolumeAdminMount(p.appId) } })) === 0) {
    throw new ForbiddenError('volume:admin', { reason: `app ${p.appId} needs an admin mount with path_pattern ${MATCH_ALL}` });
  }
}
