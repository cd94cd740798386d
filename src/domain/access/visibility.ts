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
 * For a volume row already loaded through a visibility filter (a nested GraphQL field's parent):
 * whether its contents (entries, locks) may be listed. Deleted volumes list nothing; and, belt and
 * braces, a key never lists another organisation's volume however it was reached.
 */
export function contentsListable(p: Principal, v: Pick<Volume, 'orgId' | 'deletedAt'>): boolean {
  return !v.deletedAt && (p.kind !== 'key' || v.orgId === p.orgId);
}

/**
 * The soft-deleted volumes a principal may find again (to restore them, delete them for good, or
 * list them): its org's, and for app keys only those it administered whole (an `admin` mount on
 * `/**`, as deleting needs). To anyone else a deleted volume does not exist. An `AND`, as above;
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
 * The rules above as SQL over a table alias, for compiled reads (src/graphql/compiled/), for keys
 * (the platform key names an org per call and keeps the Prisma forms): `visibleWorkspaceWhere`,
 * `visibleVolumeWhere` and `mountVisibilityWhere` (mounts/mounts.ts) in the same terms. Undefined
 * for the platform key. test/graphql-compiled.test.ts holds each pair to the same answers, for org
 * and app keys.
 */
export function visibleWorkspaceSql(p: Principal, alias: string): Prisma.Sql | undefined {
  if (p.kind !== 'key') return undefined;
  const w = Prisma.raw(alias);
  if (!isAppKey(p)) return Prisma.sql`${w}.org_id = ${p.orgId}`;
  return Prisma.sql`${w}.org_id = ${p.orgId} AND EXISTS (SELECT 1 FROM volumes av WHERE av.workspace_id = ${w}.id AND ${appVolumeSql(p.appId, 'av')})`;
}

export function visibleVolumeSql(p: Principal, alias: string): Prisma.Sql | undefined {
  if (p.kind !== 'key') return undefined;
  const org = liveInOrgSql(alias, p.orgId);
  return isAppKey(p) ? Prisma.sql`${org} AND ${appVolumeSql(p.appId, alias)}` : org;
}

/**
 * `visibleVolumeWhere(p, orgId)` in SQL for any principal: the platform key too, in the org it names
 * (for a key, `orgId` is its own: enterOrg refused any other).
 */
export function visibleVolumeInOrgSql(p: Principal, alias: string, orgId: string): Prisma.Sql {
  return visibleVolumeSql(p, alias) ?? liveInOrgSql(alias, orgId);
}

/** `LIVE` and an org, in SQL. */
const liveInOrgSql = (alias: string, orgId: string) => {
  const v = Prisma.raw(alias);
  return Prisma.sql`${v}.deleted_at IS NULL AND ${v}.org_id = ${orgId}`;
};

/** `appVolumeWhere` in SQL: live, and mounted for the app or shared. */
function appVolumeSql(appId: string, alias: string): Prisma.Sql {
  const v = Prisma.raw(alias);
  return Prisma.sql`${v}.deleted_at IS NULL AND (${v}.is_shared OR EXISTS (SELECT 1 FROM mounts am WHERE am.volume_id = ${v}.id AND am.app_id = ${appId}))`;
}

/** `mountVisibilityWhere` in SQL: every mount for org keys; an app key's own, or all where it administers the whole volume. */
export function visibleMountSql(p: Principal, alias: string): Prisma.Sql | undefined {
  if (p.kind !== 'key') return undefined;
  if (!isAppKey(p)) return Prisma.sql`true`;
  const m = Prisma.raw(alias);
  return Prisma.sql`(${m}.app_id = ${p.appId} OR EXISTS (SELECT 1 FROM mounts wm WHERE wm.volume_id = ${m}.volume_id
    AND wm.app_id = ${p.appId} AND wm.access_level::text = ${WHOLE_VOLUME_ADMIN.accessLevel} AND wm.path_pattern = ${WHOLE_VOLUME_ADMIN.pathPattern}))`;
}

/**
 * What makes an app the admin of a whole volume: an `admin` mount over every path. An admin mount
 * on a sub-tree administers entries there, but changing the volume or granting mounts would let it
 * widen its own reach, so those need the whole volume.
 */
export function wholeVolumeAdminMount(appId: string): Prisma.MountWhereInput {
  return { appId, ...WHOLE_VOLUME_ADMIN };
}
const WHOLE_VOLUME_ADMIN = { accessLevel: 'admin', pathPattern: MATCH_ALL } as const;

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
