-- Hand-written: index kinds Prisma cannot express in schema.prisma. `npm run migration:new`
-- knows to ignore the drops the engine proposes for them in later diffs.

-- Full-text search over chunk content (chunks.tsv is filled on insert).
CREATE INDEX "chunks_tsv_idx" ON "chunks" USING gin ("tsv");

-- Approximate nearest-neighbour search. The embedding column is dimension-less and HNSW needs a
-- fixed dimension, so there is one partial expression index per supported size. Queries must
-- repeat both the cast and the filter to use them:
--   ... WHERE dims = 1024 ORDER BY embedding::vector(1024) <=> $1::vector(1024) LIMIT k
CREATE INDEX "chunks_embedding_384_hnsw_idx" ON "chunks" USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE dims = 384;

CREATE INDEX "chunks_embedding_1024_hnsw_idx" ON "chunks" USING hnsw ((embedding::vector(1024)) vector_cosine_ops) WHERE dims = 1024;

CREATE INDEX "chunks_embedding_1536_hnsw_idx" ON "chunks" USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WHERE dims = 1536;
