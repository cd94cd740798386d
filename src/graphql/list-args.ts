import { z } from 'zod';
import { ValidationError } from '../domain/shared/errors.js';
import { MAX_OFFSET, orderByOf, parseSort } from '../domain/shared/listing.js';
import { parseInput } from '../domain/shared/validation.js';
import { VolumeFilters } from '../domain/volumes/listing.js';
import { WorkspaceFilters } from '../domain/workspaces/listing.js';
import { builder } from './builder.js';

/**
 * Filter, sort and offset arguments of the volume and workspace connections: the REST list
 * parameters under the same names and rules (the domain's zod shapes), so `sort: "name:desc"`
 * means what `?sort=name:desc` does.
 */
export const listFilterArgs = builder.args((t) => ({
  search: t.string({
    description: 'Case-insensitive substring of the name or description (volumes: also the label); % and _ match themselves',
  }),
  tags: t.stringList({ description: 'Only items carrying every one of these tags' }),
  sort: t.string({
    description: 'created_at, updated_at or name (volumes also label), with :asc (default) or :desc; without it, creation order',
  }),
}));

export const offsetArg = builder.args((t) => ({
  offset: t.int({ description: `Items to skip (0-${MAX_OFFSET}) before the page; not with after` }),
}));

type Nullable<T> = { [K in keyof T]?: T[K] | null };
const defined = <T extends object>(args: T) => Object.fromEntries(Object.entries(args).filter(([, v]) => v != null));

/** @throws ValidationError naming the argument (`volumeType` as the client wrote it) */
export function volumeFiltersOf(
  args: Nullable<{ search: string; tags: string[]; sort: string; status: string; volumeType: string }>,
): VolumeFilters {
  const { volumeType, ...rest } = args;
  return parseInput(VolumeFilters, defined({ ...rest, volume_type: volumeType }));
}

/** @throws ValidationError naming the argument */
export function workspaceFiltersOf(args: Nullable<{ search: string; tags: string[]; sort: string; status: string }>): WorkspaceFilters {
  return parseInput(WorkspaceFilters, defined(args));
}

/** The Prisma order of validated filters (ties broken by id, which the connection cursors use). */
export function orderOf(filters: { sort?: string | undefined }) {
  return orderByOf(parseSort(filters.sort));
}

const Offset = z.number().int().min(0).max(MAX_OFFSET);

/**
 * The rows to skip for `offset`, added to what the connection skips itself.
 * @throws ValidationError for a bad offset, or one given with `after`
 */
export function offsetOf(args: { offset?: number | null; after?: string | null }): number {
  if (args.offset == null) return 0;
  const offset = parseInput(Offset, args.offset, ['offset']);
  if (args.after != null) throw ValidationError.field(['offset'], 'offset and after cannot be used together', offset);
  return offset;
}
