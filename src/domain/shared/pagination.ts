import { z } from 'zod';
import { ValidationError } from './errors.js';

export const DEFAULT_LIMIT = 50;
export const MAX_LIMIT = 200;

/**
 * An integer from a query string, parsed strictly: decimal digits with an optional minus sign and
 * nothing else (no `0x10`, no `5 `, no `1e3`, no empty string), so every route reads a number the
 * same way. Anything else is 422 "Input should be a valid integer".
 */
export function queryInt(min: number, max: number) {
  return z.preprocess(
    (v) => (typeof v === 'string' && /^-?\d{1,15}$/.test(v) ? Number(v) : v),
    z.number({ error: 'Input should be a valid integer' }).int().min(min).max(max),
  );
}

/** `limit` and `cursor` as every list route takes them. */
export const PageQuery = z.object({
  limit: queryInt(1, MAX_LIMIT).default(DEFAULT_LIMIT).describe('Maximum number of items to return (1-200)'),
  cursor: z.string().max(512).optional().describe("Cursor for pagination (from previous response's next_cursor)"),
});
export type PageQuery = z.output<typeof PageQuery>;

export interface Page<T> {
  items: T[];
  total: number;
  hasMore: boolean;
  nextCursor: string | null;
}

const CURSOR_VERSION = 1;
const idPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Cursors are opaque to clients: a versioned, base64url-encoded position (the last id seen). */
export function encodeCursor(id: string): string {
  return Buffer.from(JSON.stringify({ v: CURSOR_VERSION, id })).toString('base64url');
}

/** @throws ValidationError (loc `cursor`) when the cursor was not issued by this API */
export function decodeCursor(cursor: string, loc: (string | number)[] = ['query', 'cursor']): string {
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as { v?: unknown; id?: unknown };
    if (parsed.v === CURSOR_VERSION && typeof parsed.id === 'string' && idPattern.test(parsed.id)) return parsed.id;
  } catch {
    // fall through to the validation error
  }
  throw ValidationError.field(loc, 'Invalid cursor: use the next_cursor of a previous response', cursor, 'cursor_invalid');
}

/**
 * Keyset paging over time-ordered (uuid v7) ids: stable under concurrent inserts and deletes,
 * unlike offsets. `find` receives the Prisma arguments to spread into its findMany.
 */
export async function paginate<T extends { id: string }>(
  page: PageQuery,
  count: () => Promise<number>,
  find: (args: { where: { id?: { gt: string } }; orderBy: { id: 'asc' }; take: number }) => Promise<T[]>,
  cursorLoc?: (string | number)[],
): Promise<Page<T>> {
  const after = page.cursor ? decodeCursor(page.cursor, cursorLoc) : undefined;
  const [total, rows] = await Promise.all([
    count(),
    find({ where: after ? { id: { gt: after } } : {}, orderBy: { id: 'asc' }, take: page.limit + 1 }),
  ]);
  const hasMore = rows.length > page.limit;
  const items = hasMore ? rows.slice(0, page.limit) : rows;
  const last = items.at(-1);
  return { items, total, hasMore, nextCursor: hasMore && last ? encodeCursor(last.id) : null };
}
