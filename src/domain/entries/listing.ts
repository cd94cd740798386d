import { z } from 'zod';
import type { Entry } from '../../generated/prisma/client.js';
import { Prisma } from '../../generated/prisma/client.js';
import type { EntryAccess } from '../access/entry-access.js';
import type { Principal } from '../access/principal.js';
import { ValidationError } from '../shared/errors.js';
import { Tags } from '../shared/fields.js';
import { liveEntrySql } from '../shared/live-entries.js';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../shared/pagination.js';
import { normaliseDirectory, normaliseEntryPath } from '../shared/paths.js';
import type { Loc, VolumeRoute } from '../shared/routes.js';
import type { Runtime } from '../shared/runtime.js';
import { parseInput } from '../shared/validation.js';
import { openVolume } from './entries.js';
import { ENTRY_KINDS } from './rules.js';

/** Directories returned with one listing page; deeper trees page through `path=`. */
export const MAX_DIRECTORIES = 1000;

/** Cursors over entries are the last path seen, opaque to clients. */
export function encodePathCursor(path: string): string {
  return Buffer.from(JSON.stringify({ v: 1, p: path })).toString('base64url');
}

/**
 * Strictly: the cursor must hold exactly what `encodePathCursor` writes, a normalised entry path
 * (a crafted one holding NUL reached SQL as a 500).
 * @throws ValidationError (at `loc`) for cursors this API did not issue
 */
export function decodePathCursor(cursor: string, loc: Loc): string {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; p?: unknown };
    if (parsed.v === 1 && typeof parsed.p === 'string' && Object.keys(parsed).length === 2 && normaliseEntryPath(parsed.p) === parsed.p) {
      return parsed.p;
    }
  } catch {
    // fall through
  }
  throw ValidationError.field(loc, 'Invalid cursor: use the next_cursor of a previous response', cursor, 'cursor_invalid');
}

export const EntryFilters = z.object({
  prefix: z.string().max(1024).optional().describe('Only entries under this directory'),
  tags: Tags.optional().describe('Only entries carrying every one of these tags'),
  content_type: z.enum(ENTRY_KINDS).optional(),
  limit: z.number().int().min(1).max(MAX_LIMIT).default(DEFAULT_LIMIT),
  cursor: z.string().max(2048).optional(),
});
export type EntryFilters = z.input<typeof EntryFilters>;

/** The SQL conditions every entry read shares: this volume, alive, and readable by the principal. */
function visibleSql(volumeId: string, access: EntryAccess): Prisma.Sql {
  const regexes = access.readableRegexes();
  const readable = regexes === null ? Prisma.empty : Prisma.sql`AND path ~ ANY(${regexes}::text[])`;
  // The gateway's clock, as everywhere expiry is judged (writes set expires_at from it too).
  return Prisma.sql`volume_id = ${volumeId} AND ${liveEntrySql('')} ${readable}`;
}

/** Loads rows by id, in the order the ids came (one query). */
async function rowsInOrder(rt: Runtime, ids: string[]): Promise<Entry[]> {
  if (ids.length === 0) return [];
  const rows = await rt.db.entry.findMany({ where: { id: { in: ids } } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.flatMap((id) => byId.get(id) ?? []);
}

export interface DirectoryListing {
  path: string;
  directories: string[];
  entries: Entry[];
  hasMore: boolean;
  nextCursor: string | null;
}

/**
 * A directory view of a volume: the sub-directories directly under `path` (as full paths ending in
 * `/`, ready to list next) and the entries directly in it, paged by path. Entries the principal may
 * not read, and directories holding nothing it may read, are not shown.
 * @throws ValidationError (path, limit, cursor), NotFoundError, ForbiddenError
 */
export async function listDirectory(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  query: { path?: string | undefined; limit?: number | undefined; cursor?: string | undefined },
  loc: Loc = ['query'],
): Promise<DirectoryListing> {
  const { access } = await openVolume(rt, p, route, 'read');
  const dir = normaliseDirectory(query.path, [...loc, 'path']);
  const limit = query.limit ?? DEFAULT_LIMIT;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw ValidationError.field([...loc, 'limit'], `limit must be an integer from 1 to ${MAX_LIMIT}`, limit, 'limit_invalid');
  }
  const after = query.cursor ? decodePathCursor(query.cursor, [...loc, 'cursor']) : null;
  const where = visibleSql(route.volumeId, access);
  const rest = Prisma.sql`substr(path, length(${dir}) + 1)`;

  const directories = await rt.db.$queryRaw<{ dir: string }[]>`
    SELECT DISTINCT ${dir} || split_part(${rest}, '/', 1) || '/' AS dir
    FROM entries WHERE ${where} AND starts_with(path, ${dir}) AND strpos(${rest}, '/') > 0
    ORDER BY dir LIMIT ${MAX_DIRECTORIES}`;
  const ids = await rt.db.$queryRaw<{ id: string }[]>`
    SELECT id FROM entries WHERE ${where} AND starts_with(path, ${dir}) AND strpos(${rest}, '/') = 0
      ${after ? Prisma.sql`AND path > ${after}` : Prisma.empty}
    ORDER BY path LIMIT ${limit + 1}`;
  const hasMore = ids.length > limit;
  const entries = await rowsInOrder(
    rt,
    ids.slice(0, limit).map((r) => r.id),
  );
  const last = entries.at(-1);
  return {
    path: dir,
    directories: directories.map((d) => d.dir),
    entries,
    hasMore,
    nextCursor: hasMore && last ? encodePathCursor(last.path) : null,
  };
}

/**
 * Entries of a volume (the whole tree under `prefix`), filtered by tags and kind, ordered by path,
 * with an exact total. What GraphQL's `Volume.entries` serves.
 * @throws ValidationError, NotFoundError, ForbiddenError
 */
export async function listEntries(
  rt: Runtime,
  p: Principal,
  route: VolumeRoute,
  raw: EntryFilters,
  loc: Loc = [],
): Promise<{ entries: Entry[]; total: number; hasMore: boolean; nextCursor: string | null }> {
  const { access } = await openVolume(rt, p, route, 'read');
  const f = parseInput(EntryFilters, raw, loc);
  const prefix = f.prefix ? normaliseDirectory(f.prefix, [...loc, 'prefix']) : '/';
  const after = f.cursor ? decodePathCursor(f.cursor, [...loc, 'cursor']) : null;
  const conditions = Prisma.sql`${visibleSql(route.volumeId, access)} AND starts_with(path, ${prefix})
    ${f.tags?.length ? Prisma.sql`AND tags @> ${f.tags}::text[]` : Prisma.empty}
    ${f.content_type ? Prisma.sql`AND content_type = ${f.content_type}` : Prisma.empty}`;
  const [ids, count] = await Promise.all([
    rt.db.$queryRaw<{ id: string }[]>`
      SELECT id FROM entries WHERE ${conditions} ${after ? Prisma.sql`AND path > ${after}` : Prisma.empty}
      ORDER BY path LIMIT ${f.limit + 1}`,
    rt.db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM entries WHERE ${conditions}`,
  ]);
  const hasMore = ids.length > f.limit;
  const entries = await rowsInOrder(
    rt,
    ids.slice(0, f.limit).map((r) => r.id),
  );
  const last = entries.at(-1);
  return { entries, total: count[0]?.n ?? 0, hasMore, nextCursor: hasMore && last ? encodePathCursor(last.path) : null };
}
