import { performance } from 'node:perf_hooks';
import type { Runtime } from '../shared/runtime.js';
import { INDEXED_DIMS } from './sql.js';

// Bulk reindexes on the embedded database: pgvector's README advises loading rows first and
// building the HNSW index after, and on PGlite (WebAssembly, one thread) that is 4× cheaper per row
// at 100,000 rows of 384 dimensions: a build at ~1,800 rows/s against ~460 rows/s inserted one at a
// time into the built graph (BENCHMARKS.md). A reindex that will write many chunks into an index
// holding few others (a model change to new dimensions, the first indexing of a large manual
// volume) drops that index, writes its rows outside it, and builds it again before the volume
// switches to them. The build holds the embedded database's only connection (requests wait, and
// transactions that cannot start within their wait answer 503); for that reason only a reindex of
// at least REINDEX_BULK_MIN_CHUNKS chunks takes this path, only when the index holds at most a
// quarter as many other rows, and never in server mode, where other replicas share the database
// and pgvector inserts natively.

/** The HNSW index over `dims`-dimension vectors (migration chunks_fresh_tier). */
export const hnswIndexName = (dims: number) => `chunks_embedding_${dims}_hnsw_idx`;

/**
 * That index's definition, as the migration creates it (test/search-bulk-index.test.ts holds the
 * two equal, so a migration changing it must change this too).
 */
export function hnswIndexSql(dims: number): string {
  if (!INDEXED_DIMS.includes(dims)) throw new Error(`no HNSW index for ${dims} dimensions`);
  return `CREATE INDEX IF NOT EXISTS "${hnswIndexName(dims)}" ON "chunks" USING hnsw ((embedding::vector(${dims})) vector_cosine_ops) WHERE dims = ${dims} AND NOT fresh`;
}

/**
 * Memory for one build, enough to build 100,000 graph nodes of 384 or 1,024 dimensions in memory
 * (past it pgvector goes on building on disk, slower). PGlite's WebAssembly heap, which also holds
 * shared_buffers, cannot pass 2 GB.
 */
export const BUILD_MEMORY = '512MB';

/** A bulk reindex takes the index's rows to be at most this share of its own (others / its own). */
export const BULK_MAX_OTHERS = 0.25;

export async function hnswIndexExists(rt: Runtime, dims: number): Promise<boolean> {
  const [row] = await rt.db.$queryRaw<{ found: boolean }[]>`SELECT to_regclass(${hnswIndexName(dims)}) IS NOT NULL AS found`;
  return row?.found ?? true;
}

/** Builds the HNSW index over `dims` if it is missing; returns whether it built it. */
export async function buildHnswIndex(rt: Runtime, dims: number, why: string): Promise<boolean> {
  if (await hnswIndexExists(rt, dims)) return false;
  const [row] = await rt.db.$queryRaw<{ n: number }[]>`SELECT count(*)::int AS n FROM chunks WHERE dims = ${dims} AND NOT fresh`;
  const rows = row?.n ?? 0;
  rt.log.info({ dims, rows, why }, 'building an HNSW index: the embedded database is busy until it is built');
  const t0 = performance.now();
  await rt.db.$transaction(
    async (tx) => {
      await tx.$executeRawUnsafe(`SET LOCAL maintenance_work_mem = '${BUILD_MEMORY}'`);
      await tx.$executeRawUnsafe(hnswIndexSql(dims));
    },
    { timeout: 3_600_000, maxWait: 600_000 },
  );
  rt.log.info({ dims, rows, seconds: Math.round(performance.now() - t0) / 1000 }, 'HNSW index built');
  return true;
}

/**
 * Whether a reindex writing about `toWrite` chunks of `dims` dimensions into volume `volumeId`
 * should build their HNSW index after loading them (see above): embedded only, at least
 * REINDEX_BULK_MIN_CHUNKS chunks, and the index holding at most BULK_MAX_OTHERS as many rows of
 * other volumes (counted up to that bound: this volume's rows of another model with these
 * dimensions go at the switch, and are not counted).
 */
export async function wantsBulkBuild(rt: Runtime, volumeId: string, dims: number, toWrite: number): Promise<boolean> {
  const min = rt.settings.reindexBulkMinChunks;
  if (!rt.settings.soleWriter || min <= 0 || toWrite < min || !INDEXED_DIMS.includes(dims)) return false;
  const bound = Math.floor(toWrite * BULK_MAX_OTHERS) + 1;
  const [row] = await rt.db.$queryRaw<{ n: number }[]>`
    SELECT count(*)::int AS n FROM (SELECT 1 FROM chunks WHERE dims = ${dims} AND NOT fresh AND volume_id <> ${volumeId} LIMIT ${bound}) o`;
  return (row?.n ?? bound) < bound;
}

/** Drops the HNSW index over `dims` for a bulk reindex (the job has recorded that it did, first). */
export async function dropHnswIndex(rt: Runtime, dims: number): Promise<void> {
  if (!INDEXED_DIMS.includes(dims)) return;
  await rt.db.$executeRawUnsafe(`DROP INDEX IF EXISTS "${hnswIndexName(dims)}"`);
}

/**
 * At start-up, before jobs run: builds every HNSW index that is missing and that no queued or
 * running bulk reindex will build when it ends (a crash between dropping the index and recording
 * it, say, or while a cancelled run was stopping). Embedded only. Returns the dimensions built.
 * `missing`: what hnswIndexesToRestore found just before (start-up looks first, then builds in the background).
 */
export async function restoreHnswIndexes(rt: Runtime, reindexKind: string, missing?: number[]): Promise<number[]> {
  const built: number[] = [];
  for (const dims of missing ?? (await hnswIndexesToRestore(rt, reindexKind))) {
    if (await buildHnswIndex(rt, dims, 'missing at start-up')) built.push(dims);
  }
  return built;
}

/**
 * The dimensions whose HNSW index is missing and that no queued or running bulk reindex will build
 * (what restoreHnswIndexes builds). Embedded only; a few catalogue lookups.
 */
export async function hnswIndexesToRestore(rt: Runtime, reindexKind: string): Promise<number[]> {
  if (!rt.settings.soleWriter) return [];
  const missing: number[] = [];
  for (const dims of INDEXED_DIMS) {
    if (await hnswIndexExists(rt, dims)) continue;
    const [pending] = await rt.db.$queryRaw<{ n: number }[]>`
      SELECT count(*)::int AS n FROM jobs WHERE kind = ${reindexKind} AND status IN ('queued', 'running')
        AND (payload->>'bulk')::int = ${dims}`;
    if ((pending?.n ?? 0) === 0) missing.push(dims);
  }
  return missing;
}

/**
 * restoreHnswIndexes in the background, for a bulk reindex ended without running to its end (a
 * cancel of a queued or orphaned run): the build can take minutes, which no request should wait for.
 */
export function restoreHnswIndexesLater(rt: Runtime, reindexKind: string): void {
  if (!rt.settings.soleWriter) return;
  restoreHnswIndexes(rt, reindexKind).catch((err: unknown) =>
    rt.log.error({ err }, 'building a missing HNSW index failed (start-up tries again)'),
  );
}
