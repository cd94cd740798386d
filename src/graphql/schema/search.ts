import { locateVolume, locateWorkspace } from '../../domain/access/authorize.js';
import { SEARCH_MODES, type SearchHit, type SearchResult } from '../../domain/search/input.js';
import { searchAll, searchVolume } from '../../domain/search/search.js';
import { builder } from '../builder.js';
import { toDomainInput } from '../inputs.js';

const SearchMode = builder.enumType('SearchMode', {
  values: SEARCH_MODES,
  description: 'hybrid: vector + full-text fused by reciprocal rank fusion; semantic: cosine similarity; keyword: full-text.',
});
const ContentType = builder.enumType('SearchContentType', { values: ['json', 'text', 'file'] as const });

const SearchFiltersInput = builder.inputType('SearchFilters', {
  fields: (t) => ({
    pathPrefix: t.string({ description: "Only entries at or under this path ('/notes/' for a directory)" }),
    tags: t.stringList({ description: 'Only entries carrying all these tags' }),
    metadata: t.field({ type: 'JSON', description: 'Only entries whose metadata has these exact (scalar) values' }),
    contentType: t.field({ type: ContentType }),
    writtenByAppId: t.string({ description: 'Only entries written by this app' }),
  }),
});

const SearchHitRef = builder.objectRef<SearchHit>('SearchHit').implement({
  description: 'A chunk that matched, with the entry it belongs to.',
  fields: (t) => ({
    entryId: t.exposeID('entryId'),
    volumeId: t.exposeID('volumeId'),
    volumeName: t.exposeString('volumeName'),
    path: t.exposeString('path'),
    score: t.exposeFloat('score', { description: 'Higher is better; 0–1 for hybrid and keyword, cosine similarity for semantic' }),
    contentPreview: t.exposeString('contentPreview'),
    chunkIndex: t.exposeInt('chunkIndex'),
    // Prisma batches the findUnique calls of one tick into a single query: no N+1 over hits.
    entry: t.prismaField({
      type: 'Entry',
      nullable: true,
      description: 'The entry (null if it was deleted since the search ran)',
      resolve: (query, hit, _args, ctx) => ctx.runtime.db.entry.findUnique({ ...query, where: { id: hit.entryId } }),
    }),
  }),
});

const SearchResultRef = builder.objectRef<SearchResult>('SearchResult').implement({
  fields: (t) => ({
    query: t.exposeString('query'),
    total: t.exposeInt('total'),
    hits: t.field({ type: [SearchHitRef], resolve: (r) => r.results }),
  }),
});

const searchArgs = builder.args((t) => ({
  query: t.string({ required: true }),
  topK: t.int({ description: '1 to 100, default 10' }),
  mode: t.field({ type: SearchMode }),
  minScore: t.float(),
  filters: t.field({ type: SearchFiltersInput }),
}));

function searchBody(args: {
  query: string;
  topK?: number | null;
  mode?: string | null;
  minScore?: number | null;
  filters?: object | null;
}) {
  const { filters, ...rest } = args;
  return { ...toDomainInput(rest), ...(filters ? { filters: toDomainInput(filters as Record<string, unknown>) } : {}) };
}

builder.queryFields((base) => {
  const t = base.withAuth({ authenticated: true });
  return {
    search: t.field({
      type: SearchResultRef,
      description: "Searches one volume's indexed chunks (needs search and entries:read; app keys: paths their mounts match).",
      args: { volumeId: t.arg.id({ required: true }), ...searchArgs },
      resolve: async (_root, { volumeId, ...args }, ctx) =>
        searchVolume(ctx.runtime, ctx.principal, await locateVolume(ctx.runtime, String(volumeId)), searchBody(args), []),
    }),
    searchAll: t.field({
      type: SearchResultRef,
      description:
        "Searches every volume of a workspace an app can read (appId; an app key's own app by default), with that app's path patterns.",
      args: { workspaceId: t.arg.id({ required: true }), appId: t.arg.string(), ...searchArgs },
      resolve: async (_root, { workspaceId, appId, ...args }, ctx) => {
        const route = await locateWorkspace(ctx.runtime, String(workspaceId));
        return searchAll(ctx.runtime, ctx.principal, route, appId ?? undefined, searchBody(args), []);
      },
    }),
  };
});
