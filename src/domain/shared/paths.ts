import { ValidationError } from './errors.js';
import type { Loc } from './routes.js';

export const MAX_PATH_BYTES = 1024;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * Normalises an entry path: one leading `/`, Unicode NFC (so look-alike spellings are one entry),
 * no empty, `.` or `..` segments, no control characters, at most 1024 bytes. Paths are keys, never
 * file-system paths, and are decoded exactly once (by the HTTP router), so `%2e%2e` arrives as `..`
 * and is refused, while `%252e` stays the literal text `%2e`.
 * @throws ValidationError naming `loc`
 */
export function normaliseEntryPath(raw: string, loc: Loc = ['path', 'path']): string {
  const fail = (msg: string) => ValidationError.field(loc, msg, raw, 'path_invalid');
  if (typeof raw !== 'string' || raw.length === 0) throw fail('path must not be empty');
  if (CONTROL.test(raw)) throw fail('path must not contain control characters');
  const path = (raw.startsWith('/') ? raw : `/${raw}`).normalize('NFC');
  if (path === '/') throw fail('path must name an entry, not the root');
  if (path.endsWith('/')) throw fail('path must not end with /');
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') throw fail('path must not contain empty segments (//)');
    if (segment === '.' || segment === '..') throw fail("path must not contain '.' or '..' segments");
  }
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) throw fail(`path must be at most ${MAX_PATH_BYTES} bytes`);
  return path;
}

/**
 * Normalises a directory prefix for listings: `/`, `notes`, `/notes/` all become `/notes/` (root is
 * `/`). Same rules as entry paths.
 * @throws ValidationError naming `loc`
 */
export function normaliseDirectory(raw: string | undefined, loc: Loc = ['query', 'path']): string {
  if (raw === undefined || raw === '' || raw === '/') return '/';
  const trimmed = raw.endsWith('/') ? raw.slice(0, -1) : raw;
  return `${normaliseEntryPath(trimmed, loc)}/`;
}

/**
 * Escapes LIKE wildcards for Prisma's `startsWith`, which builds a LIKE pattern without escaping
 * (prisma/prisma#19506), so a prefix such as `/a_b/` matches literally.
 */
export function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
