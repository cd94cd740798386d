import type { Volume } from '../../generated/prisma/client.js';
import type { Runtime } from '../shared/runtime.js';

// BM25 as pgvector sparse vectors, for Postgres servers without pg_textsearch (migration
// chunks_bm25_sparsevec). A chunk's `bm25` column holds Okapi BM25's term-frequency weight of each of
// its lexemes (k1 1.2, b 0.75; one dimension per lexeme, by hash), written with the chunk; a query's
// vector holds each of its lexemes' IDF. Their inner product is the chunk's BM25 score, and an HNSW
// index over inner product finds the top k without scoring every chunk that shares a word with the
// query (the ts_rank_cd fallback's cost). The IDF comes from the planner's statistics of the chunks'
// tsvector column (the lexemes in most chunks and their frequencies, kept by ANALYZE / autovacuum),
// read at most once a minute per gateway.

/** The HNSW index over `chunks.bm25` (inner product; merged chunks only). */
export const SPARSE_INDEX = 'chunks_bm25_sparse_idx';

/**
 * Indexed words (lexeme occurrences) in a typical chunk of a volume: BM25's average document length,
 * fixed per volume when its chunks are written (an average that moved would mean rewriting every
 * row). English text keeps ~0.6 indexed words per chunker token (bench corpus: 37 per 64-token chunk);
 * a volume that does not split (strategy none) is weighed like the 512-token default.
 */
export function typicalChunkWords(v: Pick<Volume, 'chunkingStrategy' | 'chunkSize'>): number {
  return Math.max(8, Math.round((v.chunkingStrategy === 'none' ? 512 : v.chunkSize) * 0.6));
}

/** What the planner's statistics say about lexemes in chunks (see lexemeStats). */
interface LexemeStats {
  /** When they were read (epoch ms). */
  at: number;
  /** Estimated chunks with a tsvector. */
  rows: number;
  /** Fraction of chunks containing each common lexeme; null when the table has not been analysed. */
  freq: Map<string, number> | null;
  /** Fraction assumed for a lexeme not in `freq`: half the least common one's, as Postgres' own estimates do. */
  rare: number;
}

const STATS_TTL_MS = 60_000;

async function readLexemeStats(rt: Runtime): Promise<LexemeStats> {
  const [row] = await rt.db.$queryRaw<{ rows: number; e: string[] | null; f: number[] | null }[]>`
    SELECT greatest(c.reltuples, 0)::float8 AS rows, s.most_common_elems::text::text[] AS e, s.most_common_elem_freqs::float8[] AS f
    FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = 'chunks' AND s.attname = 'tsv'
    WHERE c.oid = 'chunks'::regclass`;
  const at = Date.now();
  if (!row?.e || !row.f) return { at, rows: Number(row?.rows ?? 0), freq: null, rare: 0 };
  const f = row.f;
  const freq = new Map(row.e.map((lexeme, i) => [lexeme, Number(f[i])]));
  // The frequencies are followed by their minimum and maximum.
  return { at, rows: Number(row.rows), freq, rare: Number(f[row.e.length] ?? 0) / 2 };
}

/** Each gateway's statistics (a promise while read), and a refresh under way. */
const statsOf = new WeakMap<Runtime, { current: Promise<LexemeStats>; refreshing?: boolean }>();

/** The statistics, read at most once a minute (a stale copy answers while a fresh one is read). */
async function lexemeStats(rt: Runtime): Promise<LexemeStats> {
  const cached = statsOf.get(rt);
  if (!cached) {
    const current = readLexemeStats(rt);
    statsOf.set(rt, { current });
    current.catch(() => statsOf.delete(rt));
    return current;
  }
  const stats = await cached.current;
  if (Date.now() - stats.at > STATS_TTL_MS && !cached.refreshing) {
    cached.refreshing = true;
    readLexemeStats(rt)
      .then((fresh) => statsOf.set(rt, { current: Promise.resolve(fresh) }))
      .catch(() => {
        cached.refreshing = false;
      });
  }
  return stats;
}

/** Forgets the statistics read so far: the next search reads them again (after an ANALYZE, say). */
export function forgetLexemeStats(rt: Runtime): void {
  statsOf.delete(rt);
}

/** A keyword query for the sparse BM25 leg: its vector, its lexemes, and how many chunks may match. */
export interface SparseQuery {
  /** pgvector sparsevec text: each lexeme's dimension and IDF. */
  vector: string;
  /** The query's lexemes (English stemming), for the full-text filter of an exact scan. */
  lexemes: string[];
  /** Chunks sharing at least one lexeme with the query, at most (Infinity where unknown). */
  estimatedMatches: number;
  /** Whether the statistics list none of the lexemes among the most common: each is rarer than all of those. */
  allRare: boolean;
}

/** The sparse vectors' dimension (2^29; the migration's bm25_dim keeps 29 bits of a lexeme's hash). */
export const SPARSE_DIMS = 536_870_912;

/**
 * The query's BM25 vector: its lexemes and their dimensions from the database (the same stemming and
 * bm25_dim the chunks were written with), each weighted by IDF, ln(1 + (1 - f) / f) for a lexeme in a
 * fraction f of the chunks. Without statistics yet every lexeme weighs 1.
 */
export async function sparseQuery(rt: Runtime, query: string): Promise<SparseQuery> {
  const [stats, lexemes] = await Promise.all([
    lexemeStats(rt),
    rt.db.$queryRaw<{ lexeme: string; dim: number }[]>`
      SELECT lexeme, bm25_dim(lexeme) AS dim FROM unnest(to_tsvector('english', ${query}))`,
  ]);
  const smallest = 0.5 / Math.max(stats.rows, 1);
  const weights = new Map<number, number>();
  let estimated = 0;
  let common = 0;
  for (const { lexeme, dim } of lexemes) {
    if (stats.freq?.has(lexeme)) common++;
    const f = stats.freq ? Math.max(stats.freq.get(lexeme) ?? stats.rare, smallest) : null;
    estimated += f === null ? Number.POSITIVE_INFINITY : f * stats.rows;
    const idf = f === null ? 1 : Math.log(1 + (1 - f) / f);
    weights.set(dim, (weights.get(dim) ?? 0) + Math.max(idf, 1e-6));
  }
  const entries = [...weights].sort((a, b) => a[0] - b[0]);
  return {
    vector: `{${entries.map(([d, w]) => `${d}:${w}`).join(',')}}/${SPARSE_DIMS}`,
    lexemes: lexemes.map((l) => l.lexeme),
    estimatedMatches: estimated,
    allRare: stats.freq !== null && common === 0,
  };
}
