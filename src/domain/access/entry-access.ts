import picomatch from 'picomatch';
import type { Db, Tx } from '../../db/client.js';
import { Prisma } from '../../generated/prisma/client.js';
import { ForbiddenError, NotFoundError } from '../shared/errors.js';
import { matchesPattern } from '../shared/path-patterns.js';
import type { Runtime } from '../shared/runtime.js';
import { ACCESS_LEVELS, type AccessLevel, isAppKey, levelAtLeast, type Principal, requireScope } from './principal.js';

/**
 * What a principal may do with the entries of one volume. Org keys and the platform key are governed
 * by scopes alone; an app key by its mounts: a path is readable when a mount's pattern matches it,
 * writable when such a mount is `write` or `admin`. Paths no mount lets the app read do not exist
 * for it (404, never listed); readable paths it may not write answer 403.
 */
export interface EntryAccess {
  readonly principal: Principal;
  canRead(path: string): boolean;
  canWrite(path: string): boolean;
  /**
   * Regexes a readable path matches (any of them), or null when every path is readable. Mount globs
   * compile (picomatch) to regexes that Postgres' ARE engine evaluates identically, so listing,
   * counting and search filter in SQL (`path ~ ANY(...)`) and pages and totals stay exact.
   */
  readableRegexes(): string[] | null;
  /**
   * True when the principal reaches the volume only because it is shared (an app key without a
   * mount on it): it may read every path and change nothing, locks included.
   */
  readonly viaShareOnly: boolean;
  /**
   * True when the principal may write somewhere in the volume: always for org keys and the platform
   * key (scopes decide), for an app key when it has a `write` or `admin` mount on the volume.
   */
  readonly writesSomewhere: boolean;
}

const FULL: Omit<EntryAccess, 'principal'> = {
  canRead: () => true,
  canWrite: () => true,
  readableRegexes: () => null,
  viaShareOnly: false,
  writesSomewhere: true,
};

function regexOf(pattern: string): string {
  return picomatch.makeRe(pattern, { dot: true, strictBrackets: true }).source;
}

/**
 * Loads the principal's access to one volume's entries (one query for app keys).
 * @throws ForbiddenError when the key lacks `entries:read` (or `entries:write` when `need` is write)
 */
export async function entryAccess(rt: Runtime, p: Principal, volumeId: string, need: 'read' | 'write'): Promise<EntryAccess> {
  requireScope(p, need === 'write' ? 'entries:write' : 'entries:read');
  return pathAccess(rt, p, volumeId);
}

/**
 * The path-level access of a principal to a volume, scopes aside (locks check their own scope). A
 * shared volume is readable at every path by app keys; their mounts still decide what they may write.
 * `db`: a transaction that must see the mounts as they are under its own locks (taking a lock).
 */
export async function pathAccess(rt: Runtime, p: Principal, volumeId: string, db: Db | Tx = rt.db): Promise<EntryAccess> {
  return (await pathAccessMany(rt, p, [volumeId], db)).get(volumeId) as EntryAccess;
}

/** `pathAccess` for many volumes at once (one query for app keys, none for other principals). */
/**
 * For compiled reads (src/graphql/compiled/): the regex of every path pattern an app key's mounts in
 * its organisation use, by pattern (what `readableRegexes` is built from), or undefined for other
 * keys, which read every path.
 */
export async function appPatternRegexes(rt: Runtime, p: Principal): Promise<Record<string, string> | undefined> {
  if (!isAppKey(p)) return undefined;
  const rows = await rt.db.mount.findMany({
    where: { appId: p.appId, volume: { orgId: p.orgId } },
    select: { pathPattern: true },
    distinct: ['pathPattern'],
  });
  return Object.fromEntries(rows.map((r) => [r.pathPattern, regexOf(r.pathPattern)]));
}

/**
 * `readableRegexes` in SQL for the volume aliased `volume`: '' (every path) for shared volumes and
 * keys without an app, else a JSON array of the regexes of the app's mounts there, looked up in
 * `regexes` (SQL yielding `appPatternRegexes` as JSON). With it, the condition that every pattern
 * was in `regexes` (false: the caller must not use the answer).
 */
export function readableRegexesSql(
  p: Principal,
  volume: string,
  regexes: Prisma.Sql,
): { rx: Prisma.Sql; complete: Prisma.Sql } | undefined {
  if (!isAppKey(p)) return undefined;
  const v = Prisma.raw(volume);
  const levels = ACCESS_LEVELS.filter((l) => levelAtLeast(l, 'read'));
  const mine = Prisma.sql`rm.app_id = ${p.appId} AND rm.access_level::text = ANY(${levels}::text[])`;
  return {
    rx: Prisma.sql`CASE WHEN ${v}.is_shared THEN '' ELSE coalesce((SELECT json_agg(${regexes}::json ->> rm.path_pattern)::text
      FROM mounts rm WHERE rm.volume_id = ${v}.id AND ${mine}), '[]') END`,
    complete: Prisma.sql`NOT EXISTS (SELECT 1 FROM mounts rm JOIN volumes rv ON rv.id = rm.volume_id
      WHERE rv.org_id = ${p.orgId} AND ${mine} AND NOT jsonb_exists(${regexes}::jsonb, rm.path_pattern))`,
  };
}

export async function pathAccessMany(
  rt: Runtime,
  p: Principal,
  volumeIds: readonly string[],
  db: Db | Tx = rt.db,
): Promise<Map<string, EntryAccess>> {
  if (!isAppKey(p)) return new Map(volumeIds.map((id) => [id, { principal: p, ...FULL }]));
  const rows = await db.volume.findMany({
    where: { id: { in: [...volumeIds] } },
    select: { id: true, isShared: true, mounts: { where: { appId: p.appId }, select: { pathPattern: true, accessLevel: true } } },
  });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return new Map(volumeIds.map((id) => [id, accessThroughMounts(p, byId.get(id)?.mounts ?? [], byId.get(id)?.isShared ?? false)]));
}

function accessThroughMounts(p: Principal, mounts: { pathPattern: string; accessLevel: string }[], shared: boolean): EntryAccess {
  const with_ = (level: AccessLevel) => mounts.filter((m) => levelAtLeast(m.accessLevel as AccessLevel, level)).map((m) => m.pathPattern);
  const readable = with_('read');
  const writable = with_('write');
  const regexes = readable.map(regexOf);
  return {
    principal: p,
    canRead: (path) => shared || readable.some((pattern) => matchesPattern(pattern, path)),
    canWrite: (path) => writable.some((pattern) => matchesPattern(pattern, path)),
    readableRegexes: () => (shared ? null : regexes),
    viaShareOnly: shared && mounts.length === 0,
    writesSomewhere: writable.length > 0,
  };
}

/** @throws NotFoundError when the path is not readable for this principal (it does not exist for it) */
export function requireReadable(access: EntryAccess, path: string): void {
  if (!access.canRead(path)) throw new NotFoundError('entry', path);
}

/**
 * @throws NotFoundError when the path is invisible to the principal, ForbiddenError (`path:write`)
 * when it can read but not write there
 */
export function requireWritable(access: EntryAccess, path: string): void {
  if (access.canWrite(path)) return;
  requireReadable(access, path);
  throw new ForbiddenError('path:write', { path, reason: 'no write or admin mount matches this path' });
}
