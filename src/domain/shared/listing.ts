import { z } from 'zod';
import { ValidationError } from './errors.js';
import { DEFAULT_LIMIT, decodeCursor, encodeCursor, MAX_LIMIT, type Page, queryInt } from './pagination.js';
import type { Loc } from './routes.js';

/**
 * Richer listing for volumes and workspaces: search, tags, sort, and offset paging beside the
 * keyset cursors every list has. One set of rules for REST query strings and GraphQL arguments.
 */
export const SORT_KEYS = ['created_at', 'updated_at', 'name'] as const;
/** Every key some list sorts by: the common ones, and `label` (volumes). */
export type SortKey = (typeof SORT_KEYS)[number] | 'label';
/** A list's `sort` values: each key alone (ascending), with `:asc` or with `:desc`. */
export const sortsOf = <K extends SortKey>(keys: readonly K[]) => keys.flatMap((k) => [k, `${k}:asc`, `${k}:desc`] as const);
export const SORTS = sortsOf(SORT_KEYS);
export type Sort = SortKey | `${SortKey}:asc` | `${SortKey}:desc`;
export const MAX_OFFSET = 100_000;
const MAX_SEARCH = 200;

export interface SortSpec {
  key: SortKey;
  dir: 'asc' | 'desc';
}

const TagList = z.string().max(64 * 50);

/** Filters and sort, as GraphQL arguments take them (REST adds paging and `fields`). */
export const listFilterShape = {
  search: z
    .string()
    .max(MAX_SEARCH)
    .optional()
    .describe('Case-insensitive substring of the name or description (% and _ match themselves)'),
  tags: z
    .union([TagList, z.array(TagList)])
    .optional()
    .describe('Only items carrying every one of these tags: repeat the parameter or separate with commas'),
  sort: z.enum(SORTS).optional().describe('created_at, updated_at or name, with :asc (default) or :desc; without it, creation order'),
};

export const listPagingShape = {
  limit: queryInt(1, MAX_LIMIT).default(DEFAULT_LIMIT).describe('Maximum number of items to return (1-200)'),
  cursor: z.string().max(1024).optional().describe("Cursor for pagination (from previous response's next_cursor)"),
  offset: queryInt(0, MAX_OFFSET).optional().describe(`Items to skip (0-${MAX_OFFSET}); cannot be combined with cursor`),
};

/** offset and cursor name two different positions: asking for both is an error, not a guess. */
export function refuseOffsetWithCursor(v: { offset?: number | undefined; cursor?: string | undefined | null }, ctx: z.RefinementCtx) {
  if (v.offset !== undefined && v.cursor != null) {
    ctx.addIssue({ code: 'custom', path: ['offset'], message: 'offset and cursor cannot be used together', input: v.offset });
  }
}

export interface ListFilters {
  search?: string | undefined;
  tags?: string | string[] | undefined;
  sort?: Sort | undefined;
}
export interface ListPaging {
  limit: number;
  cursor?: string | undefined;
  offset?: number | undefined;
}

export function parseSort(sort: string | undefined): SortSpec | null {
  if (!sort) return null;
  const [key, dir = 'asc'] = sort.split(':') as [SortKey, 'asc' | 'desc' | undefined];
  return { key, dir };
}

/** `tags=a,b&tags=c` → ['a', 'b', 'c']. */
export function tagsOf(tags: string | string[] | undefined): string[] {
  if (tags === undefined) return [];
  const all = (Array.isArray(tags) ? tags : [tags]).flatMap((t) => t.split(',')).map((t) => t.trim());
  return [...new Set(all.filter(Boolean))];
}

/** Escapes LIKE wildcards: Prisma's `contains` passes them through, so `50%` would match `500`. */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

/**
 * The filter on search text and tags every searchable list shares (Prisma where input for models
 * with `tags` and the text columns `searched`: name and description unless told otherwise).
 */
export function searchAndTagsWhere(f: ListFilters, searched: readonly string[] = ['name', 'description']) {
  const and: object[] = [];
  const term = f.search?.trim();
  if (term) {
    const contains = { contains: escapeLike(term), mode: 'insensitive' as const };
    and.push({ OR: searched.map((column) => ({ [column]: contains })) });
  }
  const tags = tagsOf(f.tags);
  if (tags.length > 0) and.push({ tags: { hasEvery: tags } });
  return and;
}

const column = { created_at: 'createdAt', updated_at: 'updatedAt', name: 'name', label: 'label' } as const;

/** The Prisma order of a sort, ties broken by id so every order is total (and pages stable). */
export function orderByOf(sort: SortSpec | null): Record<string, 'asc' | 'desc'>[] {
  if (!sort) return [{ id: 'asc' }];
  return [{ [column[sort.key]]: sort.dir }, { id: sort.dir }];
}

interface SortableRow {
  id: string;
  name: string;
  /** Volumes only: lists of other rows never sort by label. */
  label?: string;
  createdAt: Date;
  updatedAt: Date;
}

const SORTED_CURSOR_VERSION = 2;

/** A sorted cursor carries the sort it belongs to and the last row's sort value and id. */
function encodeSortedCursor(sort: SortSpec, row: SortableRow): string {
  const value = row[column[sort.key]] ?? '';
  const k = value instanceof Date ? value.toISOString() : value;
  return Buffer.from(JSON.stringify({ v: SORTED_CURSOR_VERSION, s: `${sort.key}:${sort.dir}`, k, id: row.id })).toString('base64url');
}

function decodeSortedCursor(cursor: string, sort: SortSpec, loc: Loc): { k: string | Date; id: string } {
  try {
    const c = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; s?: unknown; k?: unknown; id?: unknown };
    if (c.v === SORTED_CURSOR_VERSION && c.s === `${sort.key}:${sort.dir}` && typeof c.k === 'string' && typeof c.id === 'string') {
      const id = decodeCursor(encodeCursor(c.id), loc);
      if (sort.key === 'name' || sort.key === 'label') return { k: c.k, id };
      const at = new Date(c.k);
      if (!Number.isNaN(at.getTime())) return { k: at, id };
    }
  } catch {
    // fall through to the validation error
  }
  throw ValidationError.field(
    loc,
    'Invalid cursor: use the next_cursor of a previous response with the same sort',
    cursor,
    'cursor_invalid',
  );
}

/** Rows after a sorted cursor: a strictly later sort value, or the same value and a later id. */
function afterWhere(sort: SortSpec, after: { k: string | Date; id: string }) {
  const op = sort.dir === 'asc' ? 'gt' : 'lt';
  const col = column[sort.key];
  return { OR: [{ [col]: { [op]: after.k } }, { [col]: after.k, id: { [op]: after.id } }] };
}

/**
 * One page of a filtered, sorted list. Cursors are keyset positions (stable under inserts and
 * deletes); `offset` skips rows instead, and its page still answers a cursor to continue from.
 * Without a sort the order and the cursors are the ones every list had before (creation order).
 * `where` is combined with the page's own conditions under an AND, so it is never widened.
 * @throws ValidationError (loc `cursorLoc`) for a cursor this list did not issue
 */
export async function listPage<T extends SortableRow, W extends object>(
  q: ListFilters & ListPaging,
  where: W,
  db: { count: (where: W) => Promise<number>; find: (args: { where: W; orderBy: object[]; take: number; skip: number }) => Promise<T[]> },
  cursorLoc: Loc = ['query', 'cursor'],
): Promise<Page<T>> {
  const sort = parseSort(q.sort);
  let position: object | undefined;
  if (q.cursor) {
    position = sort ? afterWhere(sort, decodeSortedCursor(q.cursor, sort, cursorLoc)) : { id: { gt: decodeCursor(q.cursor, cursorLoc) } };
  }
  const pageWhere = (position ? { AND: [where, position] } : where) as W;
  const [total, rows] = await Promise.all([
    db.count(where),
    db.find({ where: pageWhere, orderBy: orderByOf(sort), take: q.limit + 1, skip: q.offset ?? 0 }),
  ]);
  const hasMore = rows.length > q.limit;
  const items = hasMore ? rows.slice(0, q.limit) : rows;
  const last = items.at(-1);
  const nextCursor = hasMore && last ? (sort ? encodeSortedCursor(sort, last) : encodeCursor(last.id)) : null;
  return { items, total, hasMore, nextCursor };
}
