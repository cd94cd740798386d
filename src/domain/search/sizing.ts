import { Prisma } from '../../generated/prisma/client.js';
import type { Runtime } from '../shared/runtime.js';

// How big the searched volumes are, so a small one is scanned exactly rather than through the
// indexes every volume shares. An HNSW or BM25 index scan ranks the whole index and filters to the
// searched volume afterwards: where the volume holds a small share of it, the scan reads on (pgvector's
// iterative scans, pg_textsearch's doubling depth) until enough of its rows pass, and a volume with
// fewer chunks than a leg asks for exhausts it before the exact fallback answers. Measured beside a
// 100,000-chunk volume (embedded, hash-1024, BENCHMARKS.md): hybrid over a 40-chunk volume p50 259 ms,
// a 400-chunk one 97 ms, against 14 ms for the large volume itself; an exact nearest-neighbour scan of
// 40 / 400 / 2,000 chunks took 2.5 / 7.3 / 30 ms, scoring every chunk with BM25 7.7 / 42 / 233 ms.
// Between the exact bound and a few thousand chunks, pg_textsearch's scan is told how deep to score
// from the start (bm25Depth) rather than doubling its depth from the leg's limit.

/** How long a volume's counted size stands (its growth past a bound is seen at the next count). */
export const CHUNK_COUNT_TTL_MS = 5_000;
/**
 * How long "at least the bound" stands: counting a large volume reads the bound's worth of index
 * entries (~8–16 ms for 5,000 at 100k chunks, embedded), and a large volume seldom shrinks below it.
 */
export const LARGE_COUNT_TTL_MS = 60_000;
/** Counts kept at most (the oldest are dropped first). */
const CHUNK_COUNTS_MAX = 10_000;

/** One searched volume, with the embedder whose chunks it is searched by. */
export interface SizedScope {
  volumeId: string;
  embedderId: string;
}

const keyOf = (s: SizedScope) => `${s.volumeId}\u0000${s.embedderId}`;

/**
 * How many chunks each scope holds for its embedder, counted up to `bound` (a count of `bound` means
 * at least that many): live or not, fresh or merged, the rows an exact scan would read. A count is
 * reused for CHUNK_COUNT_TTL_MS (LARGE_COUNT_TTL_MS once it reached its bound); those missing are counted together in one statement (an index scan
 * of at most `bound` entries each). Sizes only choose a plan, never change an answer: a count out of
 * date makes a search slower, not wrong.
 */
export async function chunkCounts(rt: Runtime, scopes: SizedScope[], bound: number): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  const now = performance.now();
  const missing: SizedScope[] = [];
  for (const s of scopes) {
    const known = rt.state.chunkCounts.get(keyOf(s));
    // A count stopped at a lower bound than asked says nothing about this one.
    const ttl = known && known.n >= known.bound ? LARGE_COUNT_TTL_MS : CHUNK_COUNT_TTL_MS;
    if (known && now - known.at < ttl && (known.n < known.bound || known.bound >= bound)) counts.set(keyOf(s), Math.min(known.n, bound));
    else missing.push(s);
  }
  if (missing.length > 0) {
    const rows = await rt.sqlInOne([
      Prisma.sql`SELECT s.v AS volume_id, s.e AS embedder_id,
          (SELECT count(*)::int FROM (SELECT 1 FROM chunks c WHERE c.volume_id = s.v AND c.embedder_id = s.e LIMIT ${bound}) x) AS n,
          (SELECT reltuples FROM pg_class WHERE oid = 'chunks'::regclass)::float8 AS total
        FROM unnest(${missing.map((s) => s.volumeId)}::text[], ${missing.map((s) => s.embedderId)}::text[]) AS s(v, e)`,
    ]);
    const cache = rt.state.chunkCounts;
    // -1 (or 0) until the table was first analysed (the gateway's maintenance does: maintenance/vacuum.ts).
    const total = Number(rows[0]?.total ?? -1);
    if (rows.length > 0) rt.state.chunksTotal = total > 0 ? total : undefined;
    for (const r of rows) {
      const key = keyOf({ volumeId: r.volume_id as string, embedderId: r.embedder_id as string });
      const n = Number(r.n);
      counts.set(key, n);
      cache.delete(key);
      if (cache.size >= CHUNK_COUNTS_MAX) cache.delete(cache.keys().next().value as string);
      cache.set(key, { n, bound, at: now });
    }
  }
  return counts;
}

/** Whether the scopes together hold fewer than `below` chunks (by chunkCounts; never when `below` is 0). */
export function fewerThan(counts: Map<string, number>, scopes: SizedScope[], below: number): boolean {
  if (below <= 0) return false;
  let total = 0;
  for (const s of scopes) total += counts.get(keyOf(s)) ?? below;
  return total < below;
}

/** Volumes are counted up to this many chunks where keyword search ranks with pg_textsearch (bm25Depth). */
export const BM25_DEPTH_BELOW = 5_000;
/** The deepest a BM25 scan is told to score from the start (past it, it doubles its depth as before). */
export const BM25_MAX_DEPTH = 25_000;

/**
 * How many matches pg_textsearch's scan scores from the start for a leg of `limit` rows over
 * `scopes` (its `default_limit`, sql.ts searchPlansSql). The index holds every volume's chunks; a
 * scan told to score the leg's limit keeps only the searched volumes' share of them and then scores
 * again at twice the depth, and again, until enough pass. Told twice the depth that share implies
 * (limit ÷ share), it mostly scores once: beside a 100,000-chunk volume, a 400-chunk volume's BM25 leg
 * took p50 32 / p95 59 ms told 25,600 against 63 / 158 ms from 50, a 2,000-chunk one 11.5 / 28.5 ms
 * told 5,120 against 27.7 / 58.9 ms (BENCHMARKS.md). `limit` where the sizes are not known (a volume
 * of BM25_DEPTH_BELOW chunks or more, a table never analysed).
 */
export function bm25Depth(rt: Runtime, counts: Map<string, number>, scopes: SizedScope[], limit: number): number {
  const total = rt.state.chunksTotal;
  let n = 0;
  for (const s of scopes) {
    const c = counts.get(keyOf(s));
    if (c === undefined || c >= BM25_DEPTH_BELOW) return limit;
    n += c;
  }
  if (!total || n === 0) return limit;
  return Math.min(BM25_MAX_DEPTH, Math.max(limit, Math.ceil((2 * limit * total) / n)));
}
