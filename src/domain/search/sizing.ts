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

/** How long a volume's counted size stands (its growth past a bound is seen at the next count). */
export const CHUNK_COUNT_TTL_MS = 5_000;
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
 * reused for CHUNK_COUNT_TTL_MS; those missing are counted together in one statement (an index scan
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
    if (known && now - known.at < CHUNK_COUNT_TTL_MS && (known.n < known.bound || known.bound >= bound))
      counts.set(keyOf(s), Math.min(known.n, bound));
    else missing.push(s);
  }
  if (missing.length > 0) {
    const rows = await rt.sqlInOne([
      Prisma.sql`SELECT s.v AS volume_id, s.e AS embedder_id,
          (SELECT count(*)::int FROM (SELECT 1 FROM chunks c WHERE c.volume_id = s.v AND c.embedder_id = s.e LIMIT ${bound}) x) AS n
        FROM unnest(${missing.map((s) => s.volumeId)}::text[], ${missing.map((s) => s.embedderId)}::text[]) AS s(v, e)`,
    ]);
    const cache = rt.state.chunkCounts;
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
