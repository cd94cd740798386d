/** What a volume may be created or changed with: the request bodies' schemas and their limits. */
import { z } from 'zod';
import { Description, Name, ShortId, Tags } from '../shared/fields.js';
export const INDEXING_MODES = ['auto', 'manual'] as const;
export const CHUNKING_STRATEGIES = ['recursive', 'fixed', 'none'] as const;
export const DEFAULT_EMBEDDING_MODEL = 'hash-1024';
/** What a volume holds, as its users classify it; no rule depends on it, and it may be changed. */
export const VOLUME_TYPES = ['data', 'model', 'workspace'] as const;
export type VolumeType = (typeof VOLUME_TYPES)[number];
export const MAX_LABEL_LENGTH = 128;
export const MAX_MOUNT_PATH_LENGTH = 255;
/** Where volumes are mounted unless they say otherwise: `/data/<slug of the label>`. */
export const DEFAULT_MOUNT_ROOT = '/data';
const MAX_SLUG_LENGTH = 100;
const ModelId = z
  .string()
  .trim()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, 'letters, digits and . _ : / - only');

/**
 * A display label: one line of well-formed text (the input policy refuses NUL and broken Unicode
 * everywhere; a label also refuses other control characters), trimmed, 1-128 characters.
 */
export const Label = z
  .string()
  .trim()
  .min(1)
  .max(MAX_LABEL_LENGTH)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  .regex(/^[^\u0000-\u001f\u007f-\u009f]*$/, 'must not contain control characters (a label is one line of text)')
  .describe(`Human-readable display label (1-${MAX_LABEL_LENGTH} characters); default: the name`);

/**
 * Why `path` cannot be a mount path, or undefined when it can: an absolute Unix path below `/`, in
 * its one spelling (no empty, `.` or `..` segments, no trailing slash), without control characters,
 * at most 255 characters.
 */
export function mountPathProblem(path: string): string | undefined {
  if (!path.startsWith('/')) return 'must be an absolute path (start with /)';
  if (path === '/') return 'must name a directory below / (a volume cannot be mounted over the root)';
  if (path.endsWith('/')) return 'must not end with /';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing them is the point
  if (/[\u0000-\u001f\u007f-\u009f]/.test(path)) return 'must not contain control characters';
  for (const segment of path.slice(1).split('/')) {
    if (segment === '') return 'must not contain empty segments (//)';
    if (segment === '.' || segment === '..') return 'must not contain . or .. segments';
  }
  return undefined;
}

export const MountPath = z
  .string()
  .max(MAX_MOUNT_PATH_LENGTH)
  .superRefine((path, ctx) => {
    const problem = mountPathProblem(path);
    if (problem) ctx.addIssue({ code: 'custom', message: problem, input: path });
  })
  .describe(
    `Absolute path where workspaces mount the volume (no trailing slash, no . or .. segments, at most ${MAX_MOUNT_PATH_LENGTH} characters); default: ${DEFAULT_MOUNT_ROOT}/<slug of the label>`,
  );

/**
 * The label of a volume created without one: its name, cut to 128 characters (names may have
 * 255; never between the two halves of a surrogate pair).
 */
export function defaultLabel(name: string): string {
  if (name.length <= MAX_LABEL_LENGTH) return name;
  let cut = name.slice(0, MAX_LABEL_LENGTH);
  if (/[\ud800-\udbff]$/.test(cut)) cut = cut.slice(0, -1);
  return cut.trimEnd();
}

/**
 * A label as one path segment: accents dropped (NFKD, combining marks U+0300-U+036F removed), every
 * run of anything but ASCII letters and digits as one `-`, no `-` at either end, at most 100
 * characters, lower case; `volume` when nothing is left ("Training Data" → `training-data`,
 * "Données 2024" → `donnees-2024`). The migration that added labels filled existing volumes with
 * the same rule in SQL.
 */
export function labelSlug(label: string): string {
  const slug = label
    .normalize('NFKD')
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, MAX_SLUG_LENGTH)
    .replace(/-+$/, '')
    .toLowerCase();
  return slug || 'volume';
}

/** The mount path of a volume created without one: `/data/<slug of its label>`. */
export function defaultMountPath(label: string): string {
  return `${DEFAULT_MOUNT_ROOT}/${labelSlug(label)}`;
}

/** Chunk size and overlap in tokens (cl100k), for the `recursive` and `fixed` strategies. */
const ChunkSize = z.number().int().min(16).max(8192).describe('Largest chunk, in tokens');
const ChunkOverlap = z.number().int().min(0).max(4096).describe('Tokens neighbouring chunks share (less than chunk_size)');

/** Quotas: null means unlimited. */
const Quotas = {
  max_size_bytes: z
    .number()
    .int()
    .min(0)
    .max(Number.MAX_SAFE_INTEGER)
    .nullable()
    .optional()
    .describe('Bytes the volume may hold (null: unlimited)'),
  max_file_count: z
    .number()
    .int()
    .min(0)
    .max(2_147_483_647)
    .nullable()
    .optional()
    .describe('Entries the volume may hold (null: unlimited)'),
  max_mounts: z.number().int().min(0).max(100_000).nullable().optional().describe('Mounts the volume may have (null: unlimited)'),
};

export const CreateVolumeInput = z.object({
  name: Name,
  label: Label.optional(),
  volume_type: z.enum(VOLUME_TYPES).default('data').describe('What the volume holds: data (default), model or workspace'),
  mount_path: MountPath.optional(),
  environment_id: ShortId.nullable().optional(),
  description: Description.optional(),
  embedding_model_id: ModelId.default(DEFAULT_EMBEDDING_MODEL),
  extraction_model_id: ModelId.nullable().optional(),
  indexing_mode: z.enum(INDEXING_MODES).default('auto'),
  chunking_strategy: z.enum(CHUNKING_STRATEGIES).default('recursive'),
  chunk_size: ChunkSize.default(512),
  chunk_overlap: ChunkOverlap.default(64),
  tags: Tags.default([]),
  ...Quotas,
});
export type CreateVolumeInput = z.input<typeof CreateVolumeInput>;

export const UpdateVolumeInput = z.object({
  name: Name.optional(),
  label: Label.optional().describe('A new display label (renaming the volume leaves its label as it is)'),
  volume_type: z.enum(VOLUME_TYPES).optional().describe('data, model or workspace'),
  mount_path: MountPath.optional().describe('A new mount path (absolute; changing the label leaves the mount path as it is).'),
  environment_id: ShortId.nullable().optional(),
  description: Description.optional(),
  embedding_model_id: ModelId.optional(),
  extraction_model_id: ModelId.nullable().optional(),
  indexing_mode: z.enum(INDEXING_MODES).optional(),
  chunking_strategy: z.enum(CHUNKING_STRATEGIES).optional(),
  chunk_size: ChunkSize.optional(),
  chunk_overlap: ChunkOverlap.optional(),
  tags: Tags.optional(),
  ...Quotas,
  expected_version: z
    .number()
    .int()
    .min(1)
    .max(2_147_483_647)
    .optional()
    .describe('Change the volume only if it is at this version (409 otherwise); the If-Match header says the same'),
});
export type UpdateVolumeInput = z.input<typeof UpdateVolumeInput>;
