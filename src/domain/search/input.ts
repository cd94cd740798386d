import { z } from 'zod';
import { ExternalId } from '../shared/fields.js';

// What a search asks for and what it answers, shared by the search itself and its SQL.

export const SEARCH_MODES = ['hybrid', 'semantic', 'keyword'] as const;
export type SearchMode = (typeof SEARCH_MODES)[number];

const MetadataValue = z.union([z.string(), z.number(), z.boolean(), z.null()]);

export const SearchFilters = z
  .object({
    path_prefix: z.string().min(1).max(1024).optional().describe('Only entries whose path starts with this'),
    tags: z.array(z.string().min(1).max(100)).max(20).optional().describe('Only entries carrying all these tags'),
    metadata: z
      .record(z.string().min(1).max(100), MetadataValue)
      .refine((m) => Object.keys(m).length <= 20, 'at most 20 keys')
      .optional()
      .describe('Only entries whose metadata has these exact values'),
    content_type: z.enum(['json', 'text', 'file']).optional(),
    written_by_app_id: ExternalId.optional().describe('Only entries written by this app'),
  })
  .strict();

export const SearchInput = z.object({
  query: z.string().trim().min(1).max(4000),
  top_k: z.number().int().min(1).max(100).default(10),
  mode: z.enum(SEARCH_MODES).default('hybrid'),
  min_score: z.number().min(-1).max(1).optional().describe('Drop hits scoring below this (scores are 0–1; cosine may dip below 0)'),
  filters: SearchFilters.optional(),
});
export type SearchInput = z.input<typeof SearchInput>;
export type SearchFilters = z.output<typeof SearchFilters>;

export interface SearchHit {
  entryId: string;
  volumeId: string;
  volumeName: string;
  path: string;
  score: number;
  contentPreview: string;
  chunkIndex: number;
}

export interface SearchResult {
  query: string;
  results: SearchHit[];
  total: number;
}
