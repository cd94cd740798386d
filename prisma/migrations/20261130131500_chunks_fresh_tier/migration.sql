-- Hand-written: a "fresh" tier of chunks that the HNSW indexes leave out (issue #14, ingestion).
-- Keeping an HNSW graph up to date costs ~10 ms a row on PGlite, ten times everything else an
-- indexed chunk costs. New chunks go in with fresh = true (up to SEARCH_FRESH_CHUNKS of them),
-- outside the HNSW indexes, and are found by an exact scan (chunks_fresh_idx) until the
-- background merger (src/domain/search/fresh-merger.ts) sets fresh = false, which adds them to the graph.
ALTER TABLE "chunks" ADD COLUMN "fresh" BOOLEAN NOT NULL DEFAULT false;

-- The HNSW indexes cover merged chunks only. Queries repeat the predicate to use them:
--   ... WHERE dims = 1024 AND NOT fresh ORDER BY embedding::vector(1024) <=> $1::vector(1024) LIMIT k
DROP INDEX IF EXISTS "chunks_embedding_384_hnsw_idx";
CREATE INDEX "chunks_embedding_384_hnsw_idx" ON "chunks" USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384 AND NOT fresh;

DROP INDEX IF EXISTS "chunks_embedding_1024_hnsw_idx";
CREATE INDEX "chunks_embedding_1024_hnsw_idx" ON "chunks" USING hnsw ((embedding::vector(1024)) vector_cosine_ops) WHERE dims = 1024 AND NOT fresh;

DROP INDEX IF EXISTS "chunks_embedding_1536_hnsw_idx";
CREATE INDEX "chunks_embedding_1536_hnsw_idx" ON "chunks" USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dims = 1536 AND NOT fresh;

-- The fresh chunks of a volume, for the exact leg of a search and for the merge.
CREATE INDEX "chunks_fresh_idx" ON "chunks" ("volume_id") WHERE fresh;
