/** What a volume may be created or changed with: the request bodies' schemas and their limits. */
import { z } from 'zod';
import { Description, Name, ShortId, Tags } from '../shared/fields.js';
export const INDEXING_MODES = ['auto', 'manual'] as const;
export const CHUNKING_STRATEGIES = ['recursive', 'fixed', 'none'] as const;
export const DEFAULT_EMBEDDING_MODEL = 'hash-1024';
const ModelId = z
  .string()
  .trim()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:/-]*$/, 'letters, digits and . _ : / - only');

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
