import type { Runtime } from '../shared/runtime.js';

// The fresh tier of chunks (migration chunks_fresh_tier). Inserting a row into an HNSW graph costs
// ~10 ms on PGlite (BENCHMARKS.md), ten times everything else an indexed chunk costs, so new chunks
// go in with `fresh = true`, outside the HNSW indexes (their predicate is `NOT fresh`). Searches
// find them with an exact scan beside the HNSW scan (search/sql.ts), so they are searchable as soon
// as they are written. The merger (fresh-merger.ts) moves them into the graph (`fresh = false`) when indexing
// is quiet; the tier is capped (SEARCH_FRESH_CHUNKS), so the exact scan stays bounded: past the cap,
// new chunks go straight into the graph and the merger works even while indexing goes on.

/** Fresh chunks merged per statement: each statement holds PGlite's one connection ~10 ms a row. */
export const MERGE_BATCH = 16;

/** How long a count of the fresh tier stands in for the tier (between counts, this gateway's own writes and merges adjust it). */
export const FRESH_COUNT_TTL_MS = 1_000;

/**
 * How many of the next chunks may go into the fresh tier (0 when it is full or disabled). One
 * bounded count over the tier's partial index, at most every FRESH_COUNT_TTL_MS: counting a full
 * tier cost ~4.5 ms on PGlite, asked before every batch of indexing (a sixth of a 16-row batch's
 * time in a reindex). Other replicas' writes are seen at the next count: the cap is a bound on the
 * exact scan's size, not a limit anything depends on to the row.
 */
export async function freshRoom(rt: Runtime): Promise<number> {
  const cap = rt.settings.freshChunks;
  if (cap <= 0) return 0;
  const known = rt.state.freshCount;
  if (known && performance.now() - known.at < FRESH_COUNT_TTL_MS) return Math.max(0, cap - known.n);
  const at = performance.now();
  const writes = rt.state.freshWrites;
  const before = { ...writes };
  const [row] = await rt.db.$queryRaw<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (SELECT 1 FROM chunks WHERE fresh LIMIT ${cap}) f`;
  const n = row?.n ?? 0;
  rt.state.freshCount = { n, at };
  // Empty for sure: no fresh write was uncommitted when the count began, and none began since.
  rt.state.freshEmpty = n === 0 && before.inFlight === 0 && writes.started === before.started;
  return Math.max(0, cap - n);
}

/** This gateway wrote `n` chunks into the fresh tier (negative: merged `-n`): the counted size follows. */
export function freshCounted(rt: Runtime, n: number): void {
  const known = rt.state.freshCount;
  if (known) known.n = Math.max(0, known.n + n);
}

/**
 * This gateway is about to write chunks into the fresh tier: searches stop leaving the tier out
 * (freshTierEmpty) until a count begun after the write finished finds it empty again. Returns the
 * call that says the write has ended (committed or failed).
 */
export function freshWriteStarted(rt: Runtime): () => void {
  const writes = rt.state.freshWrites;
  writes.started++;
  writes.inFlight++;
  rt.state.freshEmpty = false;
  let ended = false;
  return () => {
    if (!ended) writes.inFlight--;
    ended = true;
  };
}

/**
 * Whether a search may leave out the exact scan of the fresh tier: only where this gateway is the
 * database's only writer (embedded), so no other process can have put chunks there unseen, and its
 * last count found the tier empty with none of its own fresh writes under way (freshRoom). The
 * merger counts every couple of seconds, so a tier emptied by merging is left out soon after. That
 * scan of an empty tier cost ~0.65 ms of an 11 ms hybrid search at 100k chunks (planning included).
 */
export function freshTierEmpty(rt: Runtime): boolean {
  return rt.settings.soleWriter && rt.state.freshEmpty === true;
}

/**
 * Merges up to MERGE_BATCH fresh chunks into the HNSW graphs; returns how many. Rows another
 * replica's merger holds are skipped (SKIP LOCKED), and an entry swapping its chunks meanwhile only
 * makes the rows it deletes disappear from the batch.
 */
export async function mergeFreshBatch(rt: Runtime): Promise<number> {
  const merged = await rt.db.$executeRaw`
    UPDATE chunks SET fresh = false WHERE id IN (
      SELECT id FROM chunks WHERE fresh ORDER BY id LIMIT ${MERGE_BATCH} FOR UPDATE SKIP LOCKED)`;
  freshCounted(rt, -merged);
  return merged;
}

/** Merges every fresh chunk now, whatever else is running (tests, and shutdown-free scripts). */
export async function mergeAllFresh(rt: Runtime): Promise<number> {
  let total = 0;
  for (let n = await mergeFreshBatch(rt); n > 0; n = await mergeFreshBatch(rt)) total += n;
  return total;
}

/** Fresh chunks left over (the tier disabled since they were written): still merged. */
export async function anyFresh(rt: Runtime): Promise<boolean> {
  const [row] = await rt.db.$queryRaw<{ any: boolean }[]>`SELECT EXISTS (SELECT 1 FROM chunks WHERE fresh) AS any`;
  return row?.any ?? false;
}
