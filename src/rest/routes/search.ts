import { createRoute } from '@hono/zod-openapi';
import { z } from 'zod';
import { SearchInput, type SearchResult } from '../../domain/search/input.js';
import { cancelReindex, reindexProgress, startReindex } from '../../domain/search/reindex.js';
import { searchAll, searchVolume } from '../../domain/search/search.js';
import type { Runtime } from '../../domain/shared/runtime.js';
import { type RestApp, volumeRoute, workspaceRoute } from '../env.js';
import { errorResponses, ok, VolumeParams, WorkspaceParams } from '../schemas.js';

const tags = ['Search'];

const SearchResultItem = z.object({
  entry_id: z.string(),
  volume_id: z.string(),
  volume_name: z.string(),
  path: z.string(),
  score: z.number(),
  content_preview: z.string(),
  chunk_index: z.number().int(),
});
const SearchResponse = z.object({ results: z.array(SearchResultItem), query: z.string(), total: z.number().int() });

const ReindexProgress = z.object({
  volume_id: z.string(),
  reindex_status: z.enum(['queued', 'running', 'cancelling', 'completed', 'failed', 'cancelled']).nullable(),
  reindex_started_at: z.string().nullable(),
  reindex_completed_at: z.string().nullable(),
  reindex_progress: z.object({ total: z.number(), processed: z.number(), failed: z.number(), percent: z.number() }),
  reindex_error: z.string().nullable(),
  embedding_model_id: z.string(),
});

function searchJson(r: SearchResult) {
  return {
    results: r.results.map((h) => ({
      entry_id: h.entryId,
      volume_id: h.volumeId,
      volume_name: h.volumeName,
      path: h.path,
      score: h.score,
      content_preview: h.contentPreview,
      chunk_index: h.chunkIndex,
    })),
    query: r.query,
    total: r.total,
  };
}

function progressJson(p: Awaited<ReturnType<typeof reindexProgress>>) {
  return {
    volume_id: p.volumeId,
    reindex_status: p.status,
    reindex_started_at: p.startedAt?.toISOString() ?? null,
    reindex_completed_at: p.completedAt?.toISOString() ?? null,
    reindex_progress: { total: p.total, processed: p.processed, failed: p.failed, percent: p.percent },
    reindex_error: p.error,
    embedding_model_id: p.embedderId,
  };
}

const searchBody = {
  content: { 'application/json': { schema: SearchInput } },
  required: true,
  description:
    'query (1-4000 chars); top_k 1-100 (default 10); mode hybrid (default: vector + full-text fused by reciprocal rank fusion, scaled so 1 = ranked first by both) | semantic (cosine similarity) | keyword (full-text, scaled 0-1); min_score; filters {path_prefix, tags (all), metadata (exact values), content_type, written_by_app_id}.',
};

export function registerSearchRoutes(rt: Runtime, app: RestApp): void {
  // Registered before the volume routes' `{volume_id}` patterns can claim `search-all`.
  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/search-all',
      operationId: 'searchAll',
      tags,
      summary: 'Search across all volumes an app has access to',
      description:
        'With app_id: exactly the volumes that app has read mounts on (or that are shared), limited to the paths its mounts match. App keys may only name their own app (default). Org keys without app_id search every volume of the workspace they can see.',
      request: {
        params: WorkspaceParams,
        query: z.object({ app_id: z.string().optional().describe('App ID to search volumes for') }),
        body: searchBody,
      },
      responses: { 200: ok(SearchResponse), ...errorResponses },
    }),
    async (c) => {
      const params = c.req.valid('param');
      const result = await searchAll(rt, c.get('principal'), workspaceRoute(params), c.req.valid('query').app_id, c.req.valid('json'));
      return c.json(searchJson(result), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/search',
      operationId: 'searchVolume',
      tags,
      summary: 'Semantic search within a volume',
      description:
        'Hybrid (default), semantic or keyword search over the indexed chunks of one volume; app keys get only chunks under paths their mounts let them read.',
      request: { params: VolumeParams, body: searchBody },
      responses: { 200: ok(SearchResponse), ...errorResponses },
    }),
    async (c) => {
      const result = await searchVolume(rt, c.get('principal'), volumeRoute(c.req.valid('param')), c.req.valid('json'));
      return c.json(searchJson(result), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/reindex',
      operationId: 'startReindex',
      tags,
      summary: 'Trigger a full reindex of a volume',
      description:
        "Queues a durable reindex job (202, body null as in the legacy API). A reindex already queued or running is left as is. Progress: the volume's reindex_* fields, GET …/reindex, or the GraphQL reindexProgress subscription.",
      request: { params: VolumeParams },
      responses: { 202: ok(z.null(), 'Accepted'), ...errorResponses },
    }),
    async (c) => {
      await startReindex(rt, c.get('principal'), volumeRoute(c.req.valid('param')));
      return c.json(null, 202);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/reindex',
      operationId: 'getReindexProgress',
      tags,
      summary: "A volume's reindex state (addition)",
      description: "The volume's reindex status, progress (total, processed, failed, percent), start and end time and error.",
      request: { params: VolumeParams },
      responses: { 200: ok(ReindexProgress), ...errorResponses },
    }),
    async (c) => c.json(progressJson(await reindexProgress(rt, c.get('principal'), volumeRoute(c.req.valid('param')))), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/orgs/{org_id}/workspaces/{workspace_id}/volumes/{volume_id}/reindex/cancel',
      operationId: 'cancelReindex',
      tags,
      summary: 'Cancel a queued or running reindex (addition); searches keep the vectors they use',
      description:
        'A queued reindex is cancelled at once; a running one is cancelling until its worker finishes the entry in hand, then cancelled. Answers the reindex state, as GET …/reindex does; nothing to cancel is not an error.',
      request: { params: VolumeParams },
      responses: { 200: ok(ReindexProgress), ...errorResponses },
    }),
    async (c) => c.json(progressJson(await cancelReindex(rt, c.get('principal'), volumeRoute(c.req.valid('param')))), 200),
  );
}
