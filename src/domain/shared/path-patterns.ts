import picomatch from 'picomatch';
import { z } from 'zod';

export const MATCH_ALL = '/**';
const MAX_PATTERN_BYTES = 1024;
// biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

const options = { dot: true, strictBrackets: true } as const;

/**
 * Normalises a mount's glob `path_pattern`: `**` and `` mean everything; a pattern is absolute
 * (leading `/`), a trailing `/` means "everything below"; `.`/`..`/empty segments are refused, so a
 * pattern can only ever narrow a mount, never reach outside the volume.
 * Returns the normalised pattern or an error message.
 */
export function normalisePattern(raw: string): { ok: true; pattern: string } | { ok: false; message: string } {
  let pattern = raw.trim();
  if (pattern === '' || pattern === '**' || pattern === '/') pattern = MATCH_ALL;
  if (CONTROL.test(pattern)) return { ok: false, message: 'must not contain control characters' };
  if (pattern.startsWith('!')) return { ok: false, message: 'negated patterns are not supported' };
  if (!pattern.startsWith('/')) pattern = `/${pattern}`;
  if (pattern.endsWith('/')) pattern = `${pattern}**`;
  // Measured after normalising, so the limit holds for what is stored and normalising is idempotent.
  if (Buffer.byteLength(pattern) > MAX_PATTERN_BYTES) return { ok: false, message: `must be at most ${MAX_PATTERN_BYTES} bytes` };
  const segments = pattern.slice(1).split('/');
  if (segments.some((s) => s === '' || s === '.' || s === '..')) {
    return { ok: false, message: "must not contain empty, '.' or '..' segments" };
  }
  try {
    picomatch.makeRe(pattern, options);
  } catch (err) {
    return { ok: false, message: `is not a valid glob: ${(err as Error).message}` };
  }
  return { ok: true, pattern };
}

/** zod rule for `path_pattern`, normalising as it validates. */
export const PathPattern = z.string().transform((raw, ctx) => {
  const result = normalisePattern(raw);
  if (!result.ok) {
    ctx.addIssue({ code: 'custom', message: `path_pattern ${result.message}`, input: raw });
    return z.NEVER;
  }
  return result.pattern;
});

const compiled = new Map<string, (path: string) => boolean>();

/** True when a normalised entry path is inside a normalised pattern. Matchers are cached. */
export function matchesPattern(pattern: string, path: string): boolean {
  let isMatch = compiled.get(pattern);
  if (!isMatch) {
    isMatch = picomatch(pattern, options);
    if (compiled.size > 10_000) compiled.clear();
    compiled.set(pattern, isMatch);
  }
  return isMatch(path);
}
