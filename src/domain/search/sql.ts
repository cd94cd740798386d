import type { Tx } from '../../db/client.js';
import { Prisma } from '../../generated/prisma/client.js';
import type { Embedder } from '../../indexing/embedders/embedder.js';
import { inSpan } from '../../telemetry/tracing.js';
import { liveEntrySql } from '../shared/live-entries.js';
import type { KeywordRanking, Runtime } from '../shared/runtime.js';
import { SPARSE_DIMS, SPARSE_INDEX, type SparseQuery, sparseQuery } from './bm25-sparse.js';
import { freshTierEmpty } from './fresh.js';
import type { SearchFilters, SearchMode } from './input.js';
import { BM25_DEPTH_BELOW, bm25Depth, chunkCounts, fewerThan } from './sizing.js';

// The SQL behind search: candidates from pgvector (cosine) and full text (BM25 from pg_textsearch
// where the database has it, else BM25 as pgvector sparse vectors, else ts_rank_cd), each limited to
// the chunks the caller may read, then fused with reciprocal rank fusion.

/** One volume to search: which vectors to use and which paths are readable (null: all). */
export interface SearchScope {
  volumeId: string;
  volumeName: string;
  embedderId: string;
  pathRegexes: string[] | null;
}

export interface Candidate {
  chunkId: string;
  entryId: string;
  volumeId: string;
  path: string;
  chunkIndex: number;
  preview: string;
  score: number;
}

/** Dimensions with an HNSW index (partial expression indexes in the search_indexes migration). */
export const INDEXED_DIMS = [384, 1024, 1536];
/** Reciprocal rank fusion constant (Cormack et al.): damps the weight of the very top ranks. */
export const RRF_K = 60;
const PREVIEW_CHARS = 300;

/** pgvector 0.8 can keep scanning the HNSW graph until enough rows pass the filters (asked once per gateway). */
function hasIterativeScans(rt: Runtime): Promise<boolean> {
  rt.state.iterativeScans ??= rt.db.$queryRaw<{ v: string }[]>`SELECT extversion AS v FROM pg_extension WHERE extname = 'vector'`.then(
    (rows) => {
      const [major = 0, minor = 0] = (rows[0]?.v ?? '0.0').split('.').map(Number);
      return major > 0 || minor >= 8;
    },
  );
  return rt.state.iterativeScans;
}

/** Readable chunks: the volume's searched embedder, live entries, readable paths, the caller's filters. */
function where(scopes: SearchScope[], filters: SearchFilters, now: Date): Prisma.Sql {
  const perVolume = scopes.map((s) => {
    const paths = s.pathRegexes ? Prisma.sql` AND e.path ~ ANY(${s.pathRegexes}::text[])` : Prisma.empty;
    return Prisma.sql`(c.volume_id = ${s.volumeId} AND c.embedder_id = ${s.embedderId}${paths})`;
  });
  const parts = [Prisma.sql`(${Prisma.join(perVolume, ' OR ')})`, liveEntrySql('e', now)];
  if (filters.path_prefix && filters.path_prefix !== '/') {
    const p = filters.path_prefix;
    // A file path matches itself and what lies under it; a directory prefix ('/a/') what lies under it.
    parts.push(p.endsWith('/') ? Prisma.sql`starts_with(e.path, ${p})` : Prisma.sql`(e.path = ${p} OR starts_with(e.path, ${`${p}/`}))`);
  }
  if (filters.tags?.length) parts.push(Prisma.sql`e.tags @> ${filters.tags}::text[]`);
  if (filters.metadata && Object.keys(filters.metadata).length > 0) {
    parts.push(Prisma.sql`e.metadata @> ${JSON.stringify(filters.metadata)}::jsonb`);
  }
  if (filters.content_type) parts.push(Prisma.sql`e.content_type = ${filters.content_type}`);
  if (filters.written_by_app_id) parts.push(Prisma.sql`e.written_by_app_id = ${filters.written_by_app_id}`);
  return Prisma.join(parts, ' AND ');
}

/** A row of a search statement (each leg's rows are tagged with `leg`). */
export interface SearchRow {
  chunk_id: string;
  entry_id: string;
  volume_id: string;
  path: string;
  chunk_index: number;
  preview: string;
  score: number;
  /** A keyword row's rank where it has no score (bm25Sql's `rank`); bigint, so text from pg. */
  rank?: string | number | null;
  leg?: string;
}

const toCandidate = (r: SearchRow): Candidate => ({
  chunkId: r.chunk_id,
  entryId: r.entry_id,
  volumeId: r.volume_id,
  path: r.path,
  chunkIndex: r.chunk_index,
  preview: r.preview,
  score: Number(r.score),
});

/** Best first; equal scores by path and chunk, so they come back in the same order on every call. */
const byScore = (a: Candidate, b: Candidate) => b.score - a.score || a.path.localeCompare(b.path) || a.chunkIndex - b.chunkIndex;

/**
 * Rows of one ranked list as candidates, best first: by rank where they carry one (hybrid's BM25 leg:
 * the index's order, equal scores by position, the same on every call for the same rows), else by score.
 */
export function rankedList(rows: SearchRow[]): Candidate[] {
  if (rows.some((r) => r.rank != null)) return [...rows].sort((a, b) => Number(a.rank) - Number(b.rank)).map(toCandidate);
  return rows.map(toCandidate).sort(byScore);
}

/**
 * Settings for the statement of one search, made local to its transaction (`searchPlansSql`).
 * - Nearest neighbours: the candidate list size, pgvector 0.8's iterative scans, and no sequential
 *   scan or sort. The planner prices a distance like any other operator, and without fresh
 *   statistics (PGlite runs no autovacuum) it estimated a volume's chunks at one row and chose "read
 *   them all by the volume index, sort by distance": an exact scan, as slow as the exact fallback at
 *   10k chunks (BENCHMARKS.md). With no sort allowed, the ordered HNSW scan is the plan; the filters
 *   still apply, and iterative scans keep going until `limit` rows pass them.
 * - BM25: the ordered index scan, never another scan and a sort (which also returns non-matches).
 *   Not for ts_rank_cd, whose GIN index is only read by bitmap scans. And how deep it scores:
 *   pg_textsearch hands a query's LIMIT to its scan (top-k by Block-Max WAND), but not through the
 *   join to `entries` every search has: there the scan scored its `default_limit`, 1,000 matches,
 *   every time (at 100k chunks, embedded, top 10: 3,408 buffers and 3.1 ms against 1,531 and
 *   1.1 ms unjoined). Set to the leg's limit, it scores that many (deeper from the start where the
 *   searched volumes hold a small share of the index: sizing.ts bm25Depth); where filters keep fewer, the
 *   scan doubles its depth and scores again until `limit` rows pass or every match is scored, so
 *   a filtered search still returns `limit` hits when that many match.
 * - No JIT. Postgres prices a node it was told to avoid but must use (the sort of the fresh tier's
 *   exact scan, say) at 10^10, so every such plan passed `jit_above_cost` and a Postgres server
 *   built with LLVM compiled each search: ~200 ms of a 4 ms query (PostgreSQL 15, BENCHMARKS.md
 *   "Search (server mode)"). PGlite has no JIT; there the setting changes nothing.
 */
export function searchPlansSql(o: {
  hnsw?: { limit: number; iterative: boolean; efSearch: number };
  bm25?: { limit: number };
}): Prisma.Sql {
  const settings = new Map([
    ['enable_seqscan', 'off'],
    ['jit', 'off'],
  ]);
  if (o.hnsw) {
    settings.set('hnsw.ef_search', String(Math.max(o.hnsw.efSearch, o.hnsw.limit))).set('enable_sort', 'off');
    if (o.hnsw.iterative) settings.set('hnsw.iterative_scan', 'relaxed_order');
  }
  // Without these the planner may read chunks by another index and sort by the BM25 expression:
  // every row scored without the index (a second at 10k chunks).
  if (o.bm25) settings.set('enable_bitmapscan', 'off').set('enable_sort', 'off').set('pg_textsearch.default_limit', String(o.bm25.limit));
  return Prisma.sql`SELECT ${Prisma.join([...settings].map(([k, v]) => Prisma.sql`set_config(${k}, ${v}, true)`))}`;
}

/** The settings of `searchPlansSql` applied in a transaction (tests and benchmarks EXPLAIN with them). */
export async function useSearchPlans(tx: Tx, o: Parameters<typeof searchPlansSql>[0]): Promise<void> {
  await tx.$queryRaw(searchPlansSql(o));
}

/** The settings of a nearest-neighbour query alone (tests and benchmarks EXPLAIN with them). */
export const useHnsw = (tx: Tx, limit: number, iterative: boolean, efSearch: number) =>
  useSearchPlans(tx, { hnsw: { limit, iterative, efSearch } });

/** The settings of a BM25 query alone, scoring `limit` matches (tests EXPLAIN with them). */
export const useBm25Index = (tx: Tx, limit: number) => useSearchPlans(tx, { bm25: { limit } });

/**
 * Which chunks a nearest-neighbour query reads, and how:
 * - `hnsw`: merged chunks through the HNSW index. The query repeats the index's expression (the cast
 *   to the fixed dimension) and its predicate (a literal `dims = N AND NOT fresh`), which is what lets
 *   the planner use the partial index.
 * - `fresh`: the fresh tier (search/fresh.ts), not in the index yet: an exact scan of those rows alone.
 * - `exact`: every chunk, distance computed on the raw column (dimensions without an index, and the
 *   fallback when filters leave the index short).
 */
export type NearestScan = 'hnsw' | 'fresh' | 'exact';

/** The nearest-neighbour query over the chunks `scan` names (the best `limit` by cosine distance). */
export function semanticSql(
  d: number,
  q: string,
  scopes: SearchScope[],
  filters: SearchFilters,
  limit: number,
  scan: NearestScan,
): Prisma.Sql {
  const typed = Prisma.raw(`vector(${d})`);
  const distance = scan === 'hnsw' ? Prisma.sql`c.embedding::${typed} <=> ${q}::${typed}` : Prisma.sql`c.embedding <=> ${q}::vector`;
  const tier = scan === 'hnsw' ? Prisma.sql` AND NOT c.fresh` : scan === 'fresh' ? Prisma.sql` AND c.fresh` : Prisma.empty;
  // The distance is written once and ordered by its alias: a 1,024-dimension vector is ~8 KB of text
  // to parse and plan, and the plan (an ordered index scan) is the same.
  return Prisma.sql`
    SELECT chunk_id, entry_id, volume_id, path, chunk_index, preview, (1 - d)::float8 AS score, NULL::bigint AS rank FROM (
      SELECT c.id AS chunk_id, c.entry_id, c.volume_id, e.path, c.chunk_index, left(c.content, ${PREVIEW_CHARS}) AS preview, ${distance} AS d
      FROM chunks c JOIN entries e ON e.id = c.entry_id
      WHERE c.dims = ${Prisma.raw(String(Math.trunc(d)))}${tier} AND c.embedding IS NOT NULL AND ${where(scopes, filters, new Date())}
      ORDER BY d LIMIT ${limit}) nn`;
}
/** The BM25 index over chunk text (migration chunks_bm25), where the database has pg_textsearch. */
export const BM25_INDEX = 'chunks_bm25_idx';

/**
 * How this database ranks keyword candidates (bm25-sparse.ts, KeywordRanking): by which index the
 * migrations could build. Asked once per gateway; start-up asks first and logs the answer.
 */
export function keywordRanking(rt: Runtime): Promise<KeywordRanking> {
  rt.state.keywordRanking ??= rt.db.$queryRaw<{ relname: string }[]>`
    SELECT relname FROM pg_class WHERE relname IN (${BM25_INDEX}, ${SPARSE_INDEX}) AND relkind = 'i'`.then((rows) => {
    const names = new Set(rows.map((r) => r.relname));
    return names.has(BM25_INDEX) ? 'bm25' : names.has(SPARSE_INDEX) ? 'bm25_sparsevec' : 'ts_rank_cd';
  });
  return rt.state.keywordRanking;
}

/**
 * Which chunks the sparse BM25 leg reads, and how (as NearestScan for vectors):
 * - `hnsw`: merged chunks through the sparse HNSW index (inner product), only those sharing a lexeme
 *   with the query kept; iterative scans go on until `limit` such rows pass the filters.
 * - `fresh`: the fresh tier, not in the index yet: those of its rows sharing a lexeme, scored exactly.
 * - `exact`: every chunk sharing a lexeme with the query (the GIN index of tsv), scored exactly: the
 *   plan for queries of rare words (few matches), and the fallback when the index comes up short.
 */
export function sparseBm25Sql(
  sq: SparseQuery,
  scopes: SearchScope[],
  filters: SearchFilters,
  limit: number,
  scan: 'hnsw' | 'fresh' | 'exact',
): Prisma.Sql {
  const q = Prisma.sql`${sq.vector}::sparsevec(${Prisma.raw(String(SPARSE_DIMS))})`;
  const tier =
    scan === 'hnsw'
      ? Prisma.sql`c.bm25 IS NOT NULL AND NOT c.fresh`
      : scan === 'fresh'
        ? Prisma.sql`c.fresh AND c.bm25 IS NOT NULL`
        : // Any of the lexemes, through the GIN index.
          Prisma.sql`c.tsv @@ ${anyLexeme(Prisma.sql`${sq.lexemes}::text[]`)} AND c.bm25 IS NOT NULL`;
  // <#> is the negated inner product: below 0 for a chunk sharing a lexeme with the query.
  return Prisma.sql`
    SELECT chunk_id, entry_id, volume_id, path, chunk_index, preview, (b / (b + 1))::float8 AS score, NULL::bigint AS rank FROM (
      SELECT c.id AS chunk_id, c.entry_id, c.volume_id, e.path, c.chunk_index, left(c.content, ${PREVIEW_CHARS}) AS preview,
             -(c.bm25 <#> ${q}) AS b
      FROM chunks c JOIN entries e ON e.id = c.entry_id
      WHERE ${tier} AND (c.bm25 <#> ${q}) < 0 AND ${where(scopes, filters, new Date())}
      ORDER BY c.bm25 <#> ${q} LIMIT ${limit}) top`;
}

/**
 * How the sparse leg reads the index for a query: exactly where few chunks can match, that is fewer
 * than SPARSE_EXACT_BELOW by the statistics, or only words rarer than every common one they list.
 * An HNSW scan for words few chunks contain visits thousands of chunks that do not before it gives
 * up (hnsw.max_scan_tuples): 0.4 s, then the exact scan anyway, for two such words at 1M chunks
 * (PostgreSQL 15), where scoring their few matches exactly takes milliseconds.
 */
export const sparseScan = (sq: SparseQuery): 'hnsw' | 'exact' =>
  sq.allRare || sq.estimatedMatches < SPARSE_EXACT_BELOW ? 'exact' : 'hnsw';

/** Below this many matching chunks (estimated from the statistics) an exact scan is cheaper than the index. */
export const SPARSE_EXACT_BELOW = 2_000;

/**
 * How a BM25 leg's rows carry their place (bm25Sql):
 * - `rank`: its rank (1 = best), no score. Hybrid fuses ranks, never keyword scores.
 * - `scan`: the score pg_textsearch's index scan computed for the row, which it keeps for
 *   `bm25_get_current_score()` until it returns the next row. Read in the select list of the query
 *   whose ordered scan it is, it is the row's own: the scan is the outer side of the join, and each
 *   joined row is projected before the next is fetched. (`<@>`'s value to a few parts in 10^7 when
 *   the index counts no dead row versions; ~1 % apart while it still counts some, until a VACUUM.)
 * - `rescore`: `<@>` in the select list, which scores each row again from its text (tokenising it):
 *   6 of 10 ms for 50 rows at 100k chunks (BENCHMARKS.md), for a pg_textsearch without the function.
 */
export type Bm25Scores = 'rank' | 'scan' | 'rescore';

/** Whether this database's pg_textsearch has `bm25_get_current_score()` (asked once per gateway). */
export function bm25ScanScores(rt: Runtime): Promise<boolean> {
  rt.state.bm25ScanScores ??= rt.db.$queryRaw<{ ok: boolean }[]>`SELECT to_regprocedure('bm25_get_current_score()') IS NOT NULL AS ok`.then(
    (rows) => rows[0]?.ok ?? false,
  );
  return rt.state.bm25ScanScores;
}

/**
 * BM25 top-k (Okapi, k1 1.2, b 0.75, English stemming) from pg_textsearch's index, answered with
 * Block-Max WAND: only the best `limit` matches are scored, whatever the number of matches. The
 * filters apply during the index scan, which widens itself until `limit` rows pass them (a filtered
 * search still returns `limit` hits when that many match; searchPlansSql sets how deep it starts).
 * The plan is pinned to that scan: under a sequential scan the extension also returns non-matching
 * rows (score 0), dropped here anyway. `<@>` is the negated score; it is mapped to 0–1 as s / (s + 1).
 * Each row carries its score or its rank as `scores` says (Bm25Scores); the rows and their order
 * are the same. `exact` scores every chunk of the scopes with `<@>` instead (small volumes).
 */
export function bm25Sql(
  query: string,
  scopes: SearchScope[],
  filters: SearchFilters,
  limit: number,
  scores: Bm25Scores,
  exact = false,
): Prisma.Sql {
  const q = Prisma.sql`to_bm25query(${query}::text, ${BM25_INDEX})`;
  if (scores === 'rank' && !exact)
    // The index only returns matches (each scores above 0); row_number() numbers the scan's order.
    return Prisma.sql`
      SELECT top.*, NULL::float8 AS score, row_number() OVER () AS rank FROM (
        SELECT c.id AS chunk_id, c.entry_id, c.volume_id, e.path, c.chunk_index, left(c.content, ${PREVIEW_CHARS}) AS preview
        FROM chunks c JOIN entries e ON e.id = c.entry_id
        WHERE ${where(scopes, filters, new Date())}
        ORDER BY c.content <@> ${q} LIMIT ${limit}) top`;
  const score = scores === 'scan' && !exact ? Prisma.sql`bm25_get_current_score()` : Prisma.sql`(c.content <@> ${q})`;
  // Exact (search/sizing.ts: small volumes): every chunk of the scopes scored rather than found
  // through the index, ordered by the negated score, which no index offers; non-matches score 0.
  const order = exact ? Prisma.sql`b DESC, e.path, c.chunk_index` : Prisma.sql`c.content <@> ${q}`;
  return Prisma.sql`
    SELECT chunk_id, entry_id, volume_id, path, chunk_index, preview, (b / (b + 1))::float8 AS score, NULL::bigint AS rank FROM (
      SELECT c.id AS chunk_id, c.entry_id, c.volume_id, e.path, c.chunk_index, left(c.content, ${PREVIEW_CHARS}) AS preview,
             -${score} AS b
      FROM chunks c JOIN entries e ON e.id = c.entry_id
      WHERE ${where(scopes, filters, new Date())}
      ORDER BY ${order} LIMIT ${limit}) top
    WHERE b > 0`;
}

/**
 * A tsquery matching any of `lexemes` (an SQL text[] of lexemes already stemmed): each quoted as a
 * literal, so a lexeme that reads as tsquery syntax (`!`, `&`, `:*`) is matched as text.
 */
const anyLexeme = (lexemes: Prisma.Sql) =>
  Prisma.sql`to_tsquery('simple', coalesce(array_to_string(array(SELECT quote_literal(l) FROM unnest(${lexemes}) AS l), ' | '), ''))`;

/**
 * Full-text candidates without BM25: any of the query's lexemes (English stemming), ranked by cover
 * density and scaled to 0–1. An OR rather than plainto_tsquery's AND, so paraphrases still find
 * their documents. Every match is ranked (no top-k shortcut): slow on large volumes of common prose.
 */
function coverDensitySql(query: string, scopes: SearchScope[], filters: SearchFilters, limit: number): Prisma.Sql {
  return Prisma.sql`
    WITH q AS (
      SELECT ${anyLexeme(Prisma.sql`tsvector_to_array(to_tsvector('english', ${query}))`)} AS q)
    SELECT c.id AS chunk_id, c.entry_id, c.volume_id, e.path, c.chunk_index, left(c.content, ${PREVIEW_CHARS}) AS preview,
           ts_rank_cd(c.tsv, q.q, 32)::float8 AS score, NULL::bigint AS rank
    FROM q, chunks c JOIN entries e ON e.id = c.entry_id
    WHERE c.tsv @@ q.q AND ${where(scopes, filters, new Date())}
    ORDER BY score DESC, e.path, c.chunk_index LIMIT ${limit}`;
}

/** A nearest-neighbour leg of a search: the query's vector for the scopes sharing one embedder. */
export interface NearestLeg {
  dims: number;
  /** The query vector as pgvector text. */
  q: string;
  scopes: SearchScope[];
  /** Whether it reads an HNSW index (one exists for `dims`, and the scopes are not small enough to scan exactly: sizing.ts). */
  indexed: boolean;
}

/**
 * One search as one statement: a UNION ALL of independently planned top-k scans (each nearest leg
 * `s<i>`, with `f<i>` for its fresh chunks where it has an index; the keyword leg `k`), each row
 * tagged with its leg. Keyword rows carry a score, or only their rank where `bm25Scores` says so
 * (pg_textsearch's BM25: bm25Sql).
 */
export function searchSql(
  nearest: NearestLeg[],
  ranking: KeywordRanking | null,
  query: string,
  scopes: SearchScope[],
  filters: SearchFilters,
  limit: number,
  opts: {
    /** Rows each HNSW leg returns (default `limit`; bench/search.ts measures over-fetching with it). */
    semanticLimit?: number;
    /** How pg_textsearch's BM25 leg carries its rows' places (default `rescore`: a score on every database with it). */
    bm25Scores?: Bm25Scores;
    /** The query as a BM25 vector: required where `ranking` is bm25_sparsevec. */
    sparse?: SparseQuery;
    /** How the sparse leg reads (default sparseScan's choice; benchmarks ask for `exact`). */
    sparseScan?: 'hnsw' | 'exact';
    /** Whether to read the fresh tier beside each HNSW index (default true; false when it is known empty: fresh.ts). */
    freshTier?: boolean;
    /** pg_textsearch's BM25 leg scores every chunk of the scopes rather than reading the index (small volumes: sizing.ts). */
    bm25Exact?: boolean;
  } = {},
): Prisma.Sql {
  const semanticLimit = opts.semanticLimit ?? limit;
  const freshTier = opts.freshTier ?? true;
  const legs = nearest.flatMap((n, i) =>
    n.indexed
      ? [
          Prisma.sql`(SELECT ${`s${i}`}::text AS leg, x.* FROM (${semanticSql(n.dims, n.q, n.scopes, filters, semanticLimit, 'hnsw')}) x)`,
          ...(freshTier
            ? [Prisma.sql`(SELECT ${`f${i}`}::text AS leg, x.* FROM (${semanticSql(n.dims, n.q, n.scopes, filters, limit, 'fresh')}) x)`]
            : []),
        ]
      : [Prisma.sql`(SELECT ${`s${i}`}::text AS leg, x.* FROM (${semanticSql(n.dims, n.q, n.scopes, filters, limit, 'exact')}) x)`],
  );
  if (ranking === 'bm25_sparsevec') {
    const sq = opts.sparse;
    if (!sq) throw new Error('searchSql: a bm25_sparsevec search needs its sparse query');
    // No lexeme (a query of stop words): nothing can match.
    if (sq.lexemes.length > 0) {
      const scan = opts.sparseScan ?? sparseScan(sq);
      legs.push(Prisma.sql`(SELECT 'k'::text AS leg, x.* FROM (${sparseBm25Sql(sq, scopes, filters, limit, scan)}) x)`);
      if (scan === 'hnsw' && freshTier)
        legs.push(Prisma.sql`(SELECT 'kf'::text AS leg, x.* FROM (${sparseBm25Sql(sq, scopes, filters, limit, 'fresh')}) x)`);
    }
  } else if (ranking) {
    const sql =
      ranking === 'bm25'
        ? bm25Sql(query, scopes, filters, limit, opts.bm25Scores ?? 'rescore', opts.bm25Exact)
        : coverDensitySql(query, scopes, filters, limit);
    legs.push(Prisma.sql`(SELECT 'k'::text AS leg, x.* FROM (${sql}) x)`);
  }
  // A search whose every leg was left out (stop words only) still needs a statement.
  if (legs.length === 0) return Prisma.sql`SELECT NULL::text AS leg WHERE false`;
  return Prisma.join(legs, ' UNION ALL ');
}

/** The ranked candidate lists a mode needs: [semantic, keyword] for hybrid, one list otherwise. */
export async function candidatesFor(
  rt: Runtime,
  mode: SearchMode,
  query: string,
  scopes: SearchScope[],
  filters: SearchFilters,
  limit: number,
  embedderFor: (id: string) => Promise<Embedder>,
): Promise<Candidate[][]> {
  // Volumes may use different models: one nearest-neighbour leg per model, merged by score. The
  // query is embedded first, so the transaction below holds a connection only for the database's work.
  const byEmbedder = new Map<string, SearchScope[]>();
  if (mode !== 'keyword') for (const s of scopes) byEmbedder.set(s.embedderId, [...(byEmbedder.get(s.embedderId) ?? []), s]);
  const ranking = mode === 'semantic' ? null : await keywordRanking(rt);
  // Small volumes are scanned exactly, not through the indexes every volume shares (sizing.ts).
  const below = rt.settings.exactBelow;
  const sized = { nearest: mode !== 'keyword' && below.nearest > 0, bm25: ranking === 'bm25' && below.bm25 > 0 };
  // With BM25 sizing on, sizes up to BM25_DEPTH_BELOW also set how deep pg_textsearch's scan starts.
  const bound = Math.max(sized.nearest ? below.nearest : 0, sized.bm25 ? Math.max(below.bm25, BM25_DEPTH_BELOW) : 0);
  const counts = bound > 0 ? await chunkCounts(rt, scopes, bound) : new Map<string, number>();
  const nearest: NearestLeg[] = await Promise.all(
    [...byEmbedder.values()].map(async (group) => {
      const embedder = await embedderFor(group[0]!.embedderId);
      const [vector] = await embedder.embed([query]);
      return {
        dims: embedder.dims,
        q: `[${(vector as number[]).join(',')}]`,
        scopes: group,
        indexed: INDEXED_DIMS.includes(embedder.dims) && !fewerThan(counts, group, below.nearest),
      };
    }),
  );
  const bm25Exact = sized.bm25 && fewerThan(counts, scopes, below.bm25);
  const depth = sized.bm25 && !bm25Exact ? bm25Depth(rt, counts, scopes, limit) : limit;
  const sparse = ranking === 'bm25_sparsevec' ? await sparseQuery(rt, query) : undefined;
  const sparseHnsw = sparse !== undefined && sparse.lexemes.length > 0 && sparseScan(sparse) === 'hnsw';
  const denseHnsw = nearest.some((n) => n.indexed);
  const anyHnsw = denseHnsw || sparseHnsw;
  // Sparse BM25 leaves a query of stop words without a keyword leg (searchSql): nothing to send for it.
  const keywordLegs = ranking !== null && (sparse === undefined || sparse.lexemes.length > 0);
  const iterative = anyHnsw && (await hasIterativeScans(rt));

  // A statement is sent with its settings in one round trip (an implicit transaction).
  const plans = (hnsw: boolean, bm25: boolean) =>
    searchPlansSql({
      ...(hnsw ? { hnsw: { limit, iterative, efSearch: rt.settings.efSearch } } : {}),
      ...(bm25 ? { bm25: { limit: depth } } : {}),
    });
  // Hybrid fuses ranks: its keyword leg is not scored (bm25Sql).
  const bm25Scores: Bm25Scores = mode === 'hybrid' ? 'rank' : ranking === 'bm25' && (await bm25ScanScores(rt)) ? 'scan' : 'rescore';
  const opts = { bm25Scores, bm25Exact, freshTier: !freshTierEmpty(rt), ...(sparse ? { sparse } : {}) };
  // Prisma's instrumentation does not see them: each statement gets its own span.
  const send = (legs: string, statements: Prisma.Sql[]) =>
    inSpan('db.search', { 'db.system': 'postgresql', 'search.mode': mode, 'search.volumes': scopes.length, 'search.legs': legs }, () =>
      rt.sqlInOne(statements),
    ) as unknown as Promise<SearchRow[]>;
  let rows: SearchRow[];
  if (rt.settings.parallelSearchLegs && nearest.length > 0 && keywordLegs) {
    // On a server, hybrid's two halves run at once on two connections: a search takes as long as
    // its slower half, not their sum. Each half reads its index and its fresh tier in one statement,
    // so in one snapshot (a chunk merged between two would be counted twice or missed); the halves
    // only meet in the fusion, by chunk.
    const [semantic, keyword] = await Promise.all([
      send('semantic', [plans(denseHnsw, false), searchSql(nearest, null, query, scopes, filters, limit, opts)]),
      send('keyword', [plans(sparseHnsw, ranking === 'bm25' && !bm25Exact), searchSql([], ranking, query, scopes, filters, limit, opts)]),
    ]);
    rows = [...semantic, ...keyword];
  } else {
    // Every leg in one statement (embedded: one PGlite runs one statement at a time anyway).
    rows = await send('all', [
      plans(anyHnsw, ranking === 'bm25' && !bm25Exact),
      searchSql(nearest, ranking, query, scopes, filters, limit, opts),
    ]);
  }

  const lists: Candidate[][] = [];
  if (nearest.length > 0) {
    const merged: SearchRow[] = [];
    for (const [i, n] of nearest.entries()) {
      // Merged chunks from the index, fresh ones from their exact scan: disjoint sets, read in one snapshot.
      let found = rows.filter((r) => r.leg === `s${i}` || r.leg === `f${i}`);
      // A very selective filter (or a volume still mostly fresh) can leave the index short of
      // `limit` rows: an exact scan of every chunk answers then.
      if (n.indexed && rows.filter((r) => r.leg === `s${i}`).length < limit)
        found = await rt.db.$queryRaw<SearchRow[]>(semanticSql(n.dims, n.q, n.scopes, filters, limit, 'exact'));
      merged.push(...found);
    }
    // relaxed_order may return near neighbours slightly out of order: ranked by score here.
    lists.push(rankedList(merged).slice(0, limit));
  }
  if (ranking) {
    let keyword = rows.filter((r) => r.leg === 'k' || r.leg === 'kf');
    // As for vectors: filters (or a volume mostly fresh) can leave the sparse index short of `limit`
    // chunks sharing a lexeme with the query; the exact scan of those chunks answers then.
    if (sparse && sparseHnsw && rows.filter((r) => r.leg === 'k').length < limit)
      keyword = await rt.db.$queryRaw<SearchRow[]>(sparseBm25Sql(sparse, scopes, filters, limit, 'exact'));
    // relaxed_order again: the sparse leg's rows are ranked by score here.
    lists.push(rankedList(keyword).slice(0, limit));
  }
  return lists;
}

/**
 * Reciprocal rank fusion: each list adds 1/(RRF_K + rank); the sum is scaled so a chunk ranked
 * first by every list scores 1.
 */
export function fuse(lists: Candidate[][]): Candidate[] {
  const fused = new Map<string, Candidate>();
  for (const list of lists) {
    list.forEach((c, i) => {
      const add = 1 / (RRF_K + i + 1);
      const prev = fused.get(c.chunkId);
      fused.set(c.chunkId, prev ? { ...prev, score: prev.score + add } : { ...c, score: add });
    });
  }
  const best = lists.length / (RRF_K + 1);
  // Ties break on path and chunk so equal scores always come back in the same order.
  return [...fused.values()].map((c) => ({ ...c, score: c.score / best })).sort(byScore);
}
