import { z } from 'zod';
import { modelColumns } from '../../db/columns.js';
import type { Entry, Volume } from '../../generated/prisma/client.js';
import { Prisma } from '../../generated/prisma/client.js';
import { type EntryAccess, pathAccessMany } from '../access/entry-access.js';
import { type Principal, requireScope } from '../access/principal.js';
import { contentsListable } from '../access/visibility.js';
import { NotFoundError, ValidationError } from '../shared/errors.js';
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

/** Loads rows by id, in the order the ids came (one query), without their bodies unless `bodies`. */
async function rowsInOrder(rt: Runtime, ids: string[], bodies: boolean): Promise<Entry[]> {
  if (ids.length === 0) return [];
  const rows = (await rt.db.entry.findMany({
    where: { id: { in: ids } },
    ...(bodies ? {} : { omit: { content: true, contentText: true } }),
  })) as Entry[];
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
  opts: { bodies: boolean } = { bodies: true },
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
    opts.bodies,
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

/** An entries page: `total` is null when it was not asked for (it costs a count). */
export interface EntriesPage {
  entries: Entry[];
  total: number | null;
  hasMore: boolean;
  nextCursor: string | null;
}

/**
 * Entries of volumes the principal can already see (the whole tree under `prefix`), filtered by tags
 * and kind, ordered by path: GraphQL's `Volume.entries`, batched across every volume of a request.
 * One statement for every page, one more for the totals when `total` is asked,
 * whatever the number of volumes. Rows come without `content` and `content_text` (see `entryBodies`),
 * and with only `opts.fields` (plus id, volume and path) when the caller names the columns it will
 * read: a listing asking for `path sizeBytes` never reads the rest of the row.
 * Volumes that are deleted get a NotFoundError in their place.
 * @throws ValidationError, ForbiddenError (entries:read)
 */
export async function listEntriesOfVolumes(
  rt: Runtime,
  p: Principal,
  volumes: readonly Pick<Volume, 'id' | 'orgId' | 'deletedAt'>[],
  raw: EntryFilters,
  loc: Loc,
  opts: { total: boolean; fields?: readonly string[] },
): Promise<(EntriesPage | NotFoundError)[]> {
  requireScope(p, 'entries:read');
  const f = parseEntryFilters(raw, loc);
  const listable = (v: Pick<Volume, 'orgId' | 'deletedAt'>) => contentsListable(p, v);
  // One page per distinct volume (a volume may be reached through several parents in one request).
  const ids = [...new Set(volumes.filter(listable).map((v) => v.id))];
  const access = await pathAccessMany(rt, p, ids);
  const pages = await entriesPages(
    rt,
    ids.map((id) => ({ volumeId: id, access: access.get(id) as EntryAccess })),
    f,
    { total: opts.total, columns: listedColumns(opts.fields) },
  );
  const byId = new Map(ids.map((id, i) => [id, pages[i] as EntriesPage]));
  return volumes.map((v) => (listable(v) && byId.get(v.id)) || new NotFoundError('volume', v.id));
}

/** Entry bodies (`content`, `content_text`) by id, for rows listed without them. */
export async function entryBodies(rt: Runtime, ids: readonly string[]): Promise<Pick<Entry, 'content' | 'contentText'>[]> {
  const rows = await rt.db.entry.findMany({ where: { id: { in: [...ids] } }, select: { id: true, content: true, contentText: true } });
  const byId = new Map(rows.map((r) => [r.id, r]));
  return ids.map((id) => byId.get(id) ?? { content: null, contentText: null });
}

/** A listing's filters, validated and normalised (`prefix` a directory, `after` the decoded cursor). @throws ValidationError */
export function parseEntryFilters(raw: EntryFilters, loc: Loc) {
  const f = parseInput(EntryFilters, raw, loc);
  return {
    ...f,
    prefix: f.prefix ? normaliseDirectory(f.prefix, [...loc, 'prefix']) : '/',
    after: f.cursor ? decodePathCursor(f.cursor, [...loc, 'cursor']) : null,
  };
}

export type EntryListFilters = ReturnType<typeof parseEntryFilters>;

/**
 * The rows a listing page is cut from, as SQL over `entries` aliased `alias`: live entries of the
 * volume `volumeId` under the prefix, with the tags and kind asked; `rx` (SQL yielding '' or a JSON
 * array of regexes) narrows them to an app key's readable paths. Without `after`: the totals count
 * these rows, the pages continue from the cursor.
 */
export function entryListingSql(f: EntryListFilters, alias: string, volumeId: Prisma.Sql, rx?: Prisma.Sql): Prisma.Sql {
  const e = Prisma.raw(alias);
  return Prisma.sql`${e}.volume_id = ${volumeId} AND ${liveEntrySql(alias)} AND starts_with(${e}.path, ${f.prefix})
    ${rx ? Prisma.sql`AND (${rx} = '' OR ${e}.path ~ ANY(ARRAY(SELECT json_array_elements_text(${rx}::json))))` : Prisma.empty}
    ${f.tags?.length ? Prisma.sql`AND ${e}.tags @> ${f.tags}::text[]` : Prisma.empty}
    ${f.content_type ? Prisma.sql`AND ${e}.content_type = ${f.content_type}` : Prisma.empty}`;
}

/** Every entries field a listing can load: all but the bodies. */
const LISTED_FIELDS: readonly string[] = Object.values(Prisma.EntryScalarFieldEnum).filter(
  (field) => field !== 'content' && field !== 'contentText',
);
/** What a listing always loads: a row's identity, its volume (to group pages) and its path (cursors). */
const KEY_FIELDS = ['id', 'volumeId', 'path'];
const ALL_LISTED_COLUMNS = modelColumns(LISTED_FIELDS, 'e');

/**
 * The select list for `fields` (shaped like Prisma's Entry, `e` is the table): the key fields and
 * those of `fields` that are listed columns (bodies and unknown names are ignored), or every listed
 * column when no fields are named.
 */
function listedColumns(fields: readonly string[] | undefined): Prisma.Sql {
  if (!fields) return ALL_LISTED_COLUMNS;
  return modelColumns([...new Set([...KEY_FIELDS, ...fields.filter((f) => LISTED_FIELDS.includes(f))])], 'e');
}

/**
 * One page per volume in one statement (a LATERAL join walks each volume's (volume_id, path) index
 * for its first `limit + 1` rows), and their totals in one more when asked. App keys' readable
 * paths go in as one JSON array of regexes per volume ('' when every path is readable).
 */
async function entriesPages(
  rt: Runtime,
  volumes: { volumeId: string; access: EntryAccess }[],
  f: EntryListFilters,
  opts: { total: boolean; columns: Prisma.Sql },
): Promise<EntriesPage[]> {
  if (volumes.length === 0) return [];
  const ids = volumes.map((v) => v.volumeId);
  const rx = volumes.map((v) => {
    const regexes = v.access.readableRegexes();
    return regexes === null ? '' : JSON.stringify(regexes);
  });
  const conditions = entryListingSql(f, 'e', Prisma.sql`v.id`, Prisma.sql`v.rx`);
  const volumesSql = Prisma.sql`unnest(${ids}::text[], ${rx}::text[]) WITH ORDINALITY AS v(id, rx, ord)`;
  const [rows, totals] = await Promise.all([
    rt.db.$queryRaw<Entry[]>`
      SELECT p.* FROM ${volumesSql} CROSS JOIN LATERAL (
        SELECT ${opts.columns} FROM entries e WHERE ${conditions} ${f.after ? Prisma.sql`AND e.path > ${f.after}` : Prisma.empty}
        ORDER BY e.path LIMIT ${f.limit + 1}) p
      ORDER BY v.ord, p.path`,
    opts.total
      ? rt.db.$queryRaw<{ id: string; n: number }[]>`
          SELECT v.id, (SELECT count(*)::int FROM entries e WHERE ${conditions}) AS n FROM ${volumesSql}`
      : Promise.resolve([]),
  ]);
  const totalOf = new Map(totals.map((t) => [t.id, t.n]));
  const pageRows = new Map<string, Entry[]>(ids.map((id) => [id, []]));
  for (const row of rows) pageRows.get(row.volumeId)?.push(row);
  return ids.map((id) => {
    const all = pageRows.get(id) ?? [];
    const hasMore = all.length > f.limit;
    const entries = all.slice(0, f.limit);
    const last = entries.at(-1);
    return {
      entries,
      total: opts.total ? (totalOf.get(id) ?? 0) : null,
      hasMore,
      nextCursor: hasMore && last ? encodePathCursor(last.path) : null,
    };
  });
}
