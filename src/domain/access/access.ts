import { createHash, timingSafeEqual } from 'node:crypto';
import { db } from '../../db/client.js';
import type { Prisma } from '../../generated/prisma/client.js';
import { AuthenticationError, ForbiddenError, NotFoundError, ValidationError } from '../shared/errors.js';
import { ExternalId } from '../shared/fields.js';
import { MATCH_ALL } from '../shared/path-patterns.js';

export const SCOPES = [
  'workspaces:read',
  'workspaces:write',
  'volumes:read',
  'volumes:write',
  'entries:read',
  'entries:write',
  'locks:write',
  'search',
  'admin',
] as const;
export type Scope = (typeof SCOPES)[number];

/** Scopes an app key may hold: app keys act only through their mounts, never on the org itself. */
export const APP_KEY_SCOPES: readonly Scope[] = [
  'workspaces:read',
  'volumes:read',
  'volumes:write',
  'entries:read',
  'entries:write',
  'locks:write',
  'search',
];

export const ACCESS_LEVELS = ['read', 'write', 'admin'] as const;
export type AccessLevel = (typeof ACCESS_LEVELS)[number];

/** Who is calling. Built once per request (or WebSocket connection) by `authenticate`. */
export type Principal =
  | { kind: 'platform'; subject: 'admin' }
  | { kind: 'key'; subject: string; keyId: string; orgId: string; scopes: ReadonlySet<Scope>; appId: string | null };

export type AppPrincipal = Extract<Principal, { kind: 'key' }> & { appId: string };

export function isAppKey(p: Principal): p is AppPrincipal {
  return p.kind === 'key' && p.appId !== null;
}

/**
 * The principal whose view a caller asks for by naming an app (`app_id`): that app's mounts and
 * path patterns, plus the org's shared volumes, within `orgId`. Whoever names the app, platform key,
 * org key or the app's own key, gets exactly this view and nothing beyond it. Scopes stay the
 * caller's (they were checked already; this principal only narrows what is visible).
 */
export function actingAsApp(p: Principal, orgId: string, appId: string): AppPrincipal {
  if (p.kind === 'key') return { ...p, appId };
  return { kind: 'key', subject: `platform-as:${appId}`, keyId: '', orgId, scopes: new Set(SCOPES), appId };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** Pulls the key from `Authorization: Bearer …` or `X-API-Key`, as every transport accepts both. */
export function credentialFrom(headers: { authorization?: string | null; apiKey?: string | null }): string | undefined {
  const auth = headers.authorization?.trim();
  if (auth) {
    const m = /^Bearer\s+(.+)$/i.exec(auth);
    return m?.[1]?.trim() || undefined;
  }
  return headers.apiKey?.trim() || undefined;
}

const lastUsedWrites = new Map<string, number>();
const LAST_USED_RESOLUTION_MS = 60_000;

/**
 * Resolves a credential to a principal.
 * @throws AuthenticationError when the credential is missing, unknown or revoked
 */
export async function authenticate(credential: string | undefined, adminApiKey: string | undefined): Promise<Principal> {
  if (!credential) throw new AuthenticationError();
  if (adminApiKey && safeEqual(credential, adminApiKey)) return { kind: 'platform', subject: 'admin' };
  const key = await db.apiKey.findUnique({ where: { secretHash: hashSecret(credential) } });
  if (!key || key.revokedAt) throw new AuthenticationError();
  // last_used_at at minute resolution: a write per request would double the cost of every read.
  const now = Date.now();
  if ((lastUsedWrites.get(key.id) ?? 0) < now - LAST_USED_RESOLUTION_MS) {
    lastUsedWrites.set(key.id, now);
    await db.apiKey.update({ where: { id: key.id }, data: { lastUsedAt: new Date(now) } });
  }
  return {
    kind: 'key',
    subject: `key:${key.id}`,
    keyId: key.id,
    orgId: key.orgId,
    scopes: new Set(key.scopes as Scope[]),
    appId: key.appId,
  };
}

export function hasScope(p: Principal, scope: Scope): boolean {
  return p.kind === 'platform' || p.scopes.has('admin') || p.scopes.has(scope);
}

/** @throws ForbiddenError naming the missing scope */
export function requireScope(p: Principal, scope: Scope): void {
  if (!hasScope(p, scope)) throw new ForbiddenError(scope);
}

const knownOrgs = new Set<string>();

/**
 * Admits the principal to an organisation. A platform key brings the organisation into being on
 * first use; any other key sees only its own (another org answers 404, never 403, so ids do not leak).
 * @throws NotFoundError for another organisation
 */
export async function enterOrg(p: Principal, orgId: string): Promise<void> {
  if (!ExternalId.safeParse(orgId).success) {
    throw ValidationError.field(['org_id'], 'org_id must be 1-128 letters, digits or . _ : @ -, starting with a letter or digit', orgId);
  }
  if (p.kind === 'key') {
    if (p.orgId !== orgId) throw new NotFoundError('organization', orgId);
    return;
  }
  if (knownOrgs.has(orgId)) return;
  await db.organization.upsert({ where: { id: orgId }, create: { id: orgId }, update: {} });
  knownOrgs.add(orgId);
}

/** Forget cached organisations (a test resets the database underneath the process). */
export function forgetKnownOrgs(): void {
  knownOrgs.clear();
}

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

const rank: Record<AccessLevel, number> = { read: 1, write: 2, admin: 3 };

export function levelAtLeast(have: AccessLevel, need: AccessLevel): boolean {
  return rank[have] >= rank[need];
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
export async function requireVolumeAdmin(p: Principal, volumeId: string): Promise<void> {
  if (!isAppKey(p)) return;
  if ((await db.mount.count({ where: { volumeId, ...wholeVolumeAdminMount(p.appId) } })) === 0) {
    throw new ForbiddenError('volume:admin', { reason: `app ${p.appId} needs an admin mount with path_pattern ${MATCH_ALL}` });
  }
}

/** @throws ForbiddenError for app keys, which act only through their mounts and cannot change the org's structure */
export function forbidAppKey(p: Principal, requiredPermission: string): void {
  if (isAppKey(p)) {
    throw new ForbiddenError(requiredPermission, { reason: 'app keys act only through their mounts' });
  }
}
