/**
 * What a lock request may say, and what a partition means: a path (leading `/`, stored as a
 * directory, guarding writes under it while an exclusive lock is live) or a free-form name.
 */
import { z } from 'zod';
import { ExternalId, ShortId } from '../shared/fields.js';
import { normaliseDirectory } from '../shared/paths.js';
import type { Loc } from '../shared/routes.js';

export const LOCK_TYPES = ['exclusive', 'shared'] as const;
export const DEFAULT_LOCK_TTL = 60;
export const MAX_LOCK_TTL = 3600;

const Ttl = z.number().int().min(1).max(MAX_LOCK_TTL);

/**
 * A partition is either a path (leading `/`: it covers that path itself and everything under it, and
 * guards writes there while an exclusive lock is live) or a free-form name (advisory only).
 */
const Partition = z
  .string()
  .min(1)
  .max(1024)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  .refine((p) => !/[\u0000-\u001f\u007f]/.test(p), 'partition must not contain control characters');

export const AcquireLockInput = z.object({
  partition: Partition,
  app_id: ExternalId,
  execution_id: ShortId.nullable().optional(),
  lock_type: z.enum(LOCK_TYPES).default('exclusive'),
  ttl_seconds: Ttl.default(DEFAULT_LOCK_TTL),
});
export type AcquireLockInput = z.input<typeof AcquireLockInput>;

export const RenewLockInput = z.object({ lock_id: z.string().min(1).max(64), ttl_seconds: Ttl.default(DEFAULT_LOCK_TTL) });

/** Path partitions are stored as directories (`/reports` → `/reports/`), so prefixes compare exactly. */
export function normalisePartition(raw: string, loc: Loc): string {
  return raw.startsWith('/') ? normaliseDirectory(raw, loc) : raw;
}

export const isPathPartition = (partition: string) => partition.startsWith('/');

/** The path a (normalised) path partition stands for: `/reports/` → `/reports`, `/` → `/`. */
export const pathOfPartition = (partition: string) => (partition === '/' ? '/' : partition.slice(0, -1));

/**
 * A path as path partitions are stored (a trailing `/`), so that "is `path` covered by partition P"
 * is `starts_with(covered(path), P)`: `/notes/a.md` is covered by `/notes/a.md/` and by `/notes/`,
 * not by `/notes/a.mdx/` nor `/notes/a/`.
 */
export const asPartitionPrefix = (path: string) => (path.endsWith('/') ? path : `${path}/`);

export function partitionMatches(stored: string, given: string): boolean {
  return [given, `/${given}`].some((candidate) => {
    try {
      return normalisePartition(candidate, ['path', 'partition']) === stored;
    } catch {
      return false;
    }
  });
}
